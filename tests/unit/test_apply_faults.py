"""Faults in the middle of `enable`: what is asked again, and the account when it stops.

FakeCluster answers with UnavailableError (an API server that does not answer) for a number of
calls of one verb; the clock is injected, so timeouts are exact and the tests do not sleep.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubectl_keepalive.errors import EXIT_CLUSTER, EXIT_VERIFY, UnavailableError
from kubectl_keepalive.model import KeepaliveSettings
from kubectl_keepalive.usecases import app, applying
from tests.support.clock import FakeClock
from tests.unit.fake_cluster import FakeCluster, FakeGateway

SETTINGS = KeepaliveSettings(7, 5, 2)
LABEL = "istio-system/istio-ingressgateway"
FILTER = "envoyfilter istio-system/keepalive-istio-ingressgateway created"


def ingress() -> FakeGateway:
    return FakeGateway("istio-system", "istio-ingressgateway",
                       {"app": "istio-ingressgateway", "istio": "ingressgateway"}, [8080, 8443])


def enable(fake: FakeCluster, timeout: float, clock: FakeClock, seen: list[str],
           faults: dict[str, int]) -> applying.ApplyResult:
    """Plan, then break the API server as `faults` says, then apply."""
    scope = app.Scope("istio-system", "app=istio-ingressgateway")
    plan = app.plan_enable(fake, scope, SETTINGS, None, clock, clock.sleep)
    fake.unavailable = faults
    return applying.apply(fake, plan, scope, restart=True, timeout=timeout, report=seen.append,
                          clock=clock, sleep=clock.sleep,
                          now=lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))


def test_an_api_server_that_does_not_answer_for_a_while_is_asked_again() -> None:
    fake, clock, seen = FakeCluster(ingress()), FakeClock(), []
    result = enable(fake, 60, clock, seen, {"rollout_state": 3, "restart_deployment": 1})
    assert result.done == [FILTER, f"deployment {LABEL} restarted",
                           f"deployment {LABEL} rolled out"]
    assert any(line.startswith("the API server is not answering") for line in seen), seen
    # The restart sent again carries the same timestamp: one rollout, not two.
    restarts = [w for w in fake.writes if w[0] == "restart"]
    assert len(restarts) == 1 and fake.unavailable == {"rollout_state": 0,
                                                        "restart_deployment": 0}
    assert 3.0 <= clock.now < 60


def test_an_api_server_silent_past_the_timeout_stops_with_the_account() -> None:
    fake, clock, seen = FakeCluster(ingress()), FakeClock(), []
    with pytest.raises(applying.PartialFailure) as caught:
        enable(fake, 10, clock, seen, {"rollout_state": 10_000})
    error = caught.value
    assert error.exit_code == EXIT_CLUSTER
    assert clock.now == pytest.approx(10.0)
    text = str(error)
    assert 'timed out after 10s waiting for deployment "istio-ingressgateway": the API server ' \
           "is not answering" in text
    assert f"(already done: {FILTER}; deployment {LABEL} restarted; not done: rollout of " \
           f"deployment {LABEL} not completed; gateway {LABEL} not verified; re-run the same " \
           "command to finish)" in text
    done, missing = error.result.account()
    assert done == [FILTER, f"deployment {LABEL} restarted"]
    assert missing == [f"rollout of deployment {LABEL} not completed",
                       f"gateway {LABEL} not verified"]


def test_a_silent_api_server_while_listing_pods_ends_as_a_cluster_error() -> None:
    fake, clock, seen = FakeCluster(ingress()), FakeClock(), []
    scope = app.Scope("istio-system", "app=istio-ingressgateway")
    plan = app.plan_enable(fake, scope, SETTINGS, None, clock, clock.sleep)
    fake.unavailable = {"list_pods": 10_000}  # from the push wait on
    with pytest.raises(applying.PartialFailure) as caught:
        applying.apply(fake, plan, scope, restart=True, timeout=5, report=seen.append,
                       clock=clock, sleep=clock.sleep)
    assert caught.value.exit_code == EXIT_CLUSTER
    assert "did not answer within the timeout while listing the pods of gateway" in str(
        caught.value)
    assert f"not done: deployment {LABEL} not restarted; rollout of deployment {LABEL} not " \
           "completed" in str(caught.value)
    assert [w[0] for w in fake.writes] == ["create"]


def test_a_permanent_error_is_not_retried() -> None:
    fake, clock, seen = FakeCluster(ingress()), FakeClock(), []
    scope = app.Scope("istio-system", "app=istio-ingressgateway")
    plan = app.plan_enable(fake, scope, SETTINGS, None, clock, clock.sleep)
    fake.gateways.clear()  # the Deployment is gone (a 404 is not an outage)
    with pytest.raises(Exception) as caught:
        applying.apply(fake, plan, scope, restart=True, timeout=60, report=seen.append,
                       clock=clock, sleep=clock.sleep)
    assert not isinstance(caught.value, UnavailableError)
    assert clock.now < 5


def test_pods_not_verified_are_named_in_the_account() -> None:
    fake, clock, seen = FakeCluster(ingress(), propagate=False), FakeClock(), []
    scope = app.Scope("istio-system", "app=istio-ingressgateway")
    plan = app.plan_enable(fake, scope, SETTINGS, None, clock, clock.sleep)
    with pytest.raises(applying.PartialFailure) as caught:
        applying.apply(fake, plan, scope, restart=False, timeout=4, report=seen.append,
                       clock=clock, sleep=clock.sleep)
    assert caught.value.exit_code == EXIT_VERIFY
    _done, missing = caught.value.result.account()
    assert missing == [f"pod(s) istio-ingressgateway-aaaa1-0 of gateway {LABEL} not verified"]


@pytest.mark.parametrize(
    ("action", "live", "rolling", "restart"),
    [("none", False, "1 of 2 updated replicas are available", False),  # an earlier run's roll
     ("none", False, None, True),  # options not live and nothing rolling: roll
     ("update", True, "1 of 2 updated replicas are available", True),  # a new write: roll
     ("none", True, None, False)],
)
def test_a_rollout_under_way_is_waited_for_not_restarted_again(
        action: str, live: bool, rolling: str | None, restart: bool) -> None:
    from kubectl_keepalive.model import Gateway
    from kubectl_keepalive.usecases.app import GatewayPlan

    plan = GatewayPlan(Gateway("ns", "gw"), None, None, action, (), live, (),
                       rollout_incomplete=rolling)
    assert plan.needs_restart is restart
    assert plan.changes is (restart or rolling is not None)


class RacedBy(FakeCluster):
    """istiod never pushes here, and another writer changes the filter right after ours."""

    def __init__(self, change: str) -> None:
        super().__init__(ingress(), propagate=False)
        self.change = change

    def create_envoyfilter(self, namespace: str, body: dict[str, Any],
                           dry_run: bool) -> dict[str, Any]:
        created = super().create_envoyfilter(namespace, body, dry_run)
        key = (namespace, body["metadata"]["name"])
        if self.change == "delete":
            del self.filters[key]
        else:  # another enable, with --idle 30s
            for patch in self.filters[key]["spec"]["configPatches"]:
                for option in patch["patch"]["value"]["socket_options"]:
                    if option["name"] == 4:
                        option["int_value"] = 30
        return created


@pytest.mark.parametrize(("change", "says"), [("update", "changed"), ("delete", "deleted")])
def test_a_filter_changed_by_another_writer_is_named_not_blamed_on_istiod(
        change: str, says: str) -> None:
    fake, clock, seen = RacedBy(change), FakeClock(), []
    with pytest.raises(applying.PartialFailure) as caught:
        enable(fake, 60, clock, seen, {})
    assert caught.value.exit_code == EXIT_CLUSTER
    message = str(caught.value)
    assert f"was {says} by another writer" in message and "istiod has not pushed" not in message
    assert clock.now < 5, "found on the first wait, not at the timeout"
    assert [w[0] for w in fake.writes] == ["create"]  # no restart
