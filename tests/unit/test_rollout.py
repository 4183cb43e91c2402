from __future__ import annotations

import datetime

import pytest

from kubectl_keepalive.kube import rollout
from kubectl_keepalive.kube.cluster import Condition, RolloutState
from tests.support.clock import FakeClock


def state(**kw: int) -> RolloutState:
    base = {"generation": 2, "observed_generation": 2, "spec_replicas": 3, "replicas": 3,
            "updated_replicas": 3, "available_replicas": 3}
    base.update(kw)
    return RolloutState(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "done", "message"),
    [
        ({"observed_generation": 1}, False, "spec update to be observed"),
        ({"updated_replicas": 1}, False, "1 out of 3 new replicas have been updated"),
        ({"replicas": 4}, False, "1 old replicas are pending termination"),
        ({"available_replicas": 2}, False, "2 of 3 updated replicas are available"),
        ({}, True, "successfully rolled out"),
    ],
)
def test_kubectl_completion_rule(kw: dict[str, int], done: bool, message: str) -> None:
    progress = rollout.progress("gw", state(**kw))
    assert progress.done is done
    assert message in progress.message


def test_progress_deadline_exceeded_fails() -> None:
    stuck = RolloutState(2, 2, 1, 2, 1, 0, conditions=(
        Condition("Progressing", "False", "ProgressDeadlineExceeded"),))
    with pytest.raises(rollout.RolloutFailed, match="exceeded its progress deadline"):
        rollout.progress("gw", stuck)


def test_wait_reports_each_new_message_and_returns_when_done() -> None:
    states = iter([state(updated_replicas=0), state(updated_replicas=0), state(replicas=4),
                   state()])
    clock, seen = FakeClock(), []
    rollout.wait("gw", lambda: next(states), 60, clock, clock.sleep, seen.append)
    assert len(seen) == 3 and seen[-1].endswith("successfully rolled out")


def test_wait_times_out_with_the_last_message() -> None:
    clock = FakeClock()
    with pytest.raises(rollout.RolloutFailed, match=r"timed out after 5s.*1 of 3 updated"):
        rollout.wait("gw", lambda: state(available_replicas=1), 5, clock, clock.sleep,
                     lambda _: None)
    assert clock.now == pytest.approx(5.0)


def test_restarted_at_is_rfc3339_with_offset() -> None:
    stamp = rollout.restarted_at(datetime.datetime(2026, 1, 2, 3, 4, 5,
                                                   tzinfo=datetime.timezone.utc))
    assert datetime.datetime.fromisoformat(stamp).utcoffset() is not None


def test_wait_asks_again_while_the_api_server_does_not_answer() -> None:
    from kubectl_keepalive.errors import UnavailableError

    answers: list[RolloutState | None] = [None, None, state(available_replicas=1), state()]
    clock, seen = FakeClock(), []

    def read() -> RolloutState:
        got = answers.pop(0)
        if got is None:
            raise UnavailableError("cannot reach the API server: connection refused")
        return got

    rollout.wait("gw", read, 60, clock, clock.sleep, seen.append)
    assert seen[0].startswith("the API server is not answering") and "refused" in seen[0]
    assert seen[-1].endswith("successfully rolled out") and answers == []


def test_wait_stops_at_once_on_a_paused_deployment_or_a_refusal() -> None:
    from kubectl_keepalive.errors import ForbiddenError

    clock = FakeClock()
    paused = RolloutState(2, 2, 1, 1, 0, 0, paused=True)
    with pytest.raises(rollout.RolloutFailed, match="was paused during the rollout"):
        rollout.wait("gw", lambda: paused, 60, clock, clock.sleep, lambda _: None)

    def refuse() -> RolloutState:
        raise ForbiddenError("forbidden (403): cannot get deployments.apps")

    with pytest.raises(ForbiddenError):
        rollout.wait("gw", refuse, 60, clock, clock.sleep, lambda _: None)
    assert clock.now == 0.0
