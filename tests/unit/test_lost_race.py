"""A lost race under --no-restart (issue 24): another writer changes the filter while this run
verifies; it stops at once (exit 3), names the writer and its settings, and says what a re-run
of the same command would do, instead of waiting out --timeout and exiting 4."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubectl_keepalive.errors import EXIT_CLUSTER, ClusterError
from kubectl_keepalive.model import KeepaliveSettings
from kubectl_keepalive.usecases import app, applying
from tests.support.clock import FakeClock
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_apply_faults import SETTINGS, ingress

SCOPE = app.Scope("istio-system", "app=istio-ingressgateway")
KEY = ("istio-system", "keepalive-istio-ingressgateway")
STAMP = "2026-12-06T04:20:11Z"


class Racer(FakeCluster):
    """istiod never pushes here; after this run's write, another writer changes the filter the
    first time this run reads it back (as the API server records it: a managedFields entry)."""

    def __init__(self, change: str) -> None:
        super().__init__(ingress(), propagate=False)
        self.change = change
        self.raced = False

    def get_envoyfilter(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.raced and (namespace, name) == KEY:
            self.raced = True
            self._race()
        return super().get_envoyfilter(namespace, name)

    def _race(self) -> None:
        if self.change == "delete":
            self.filters.pop(KEY, None)
            return
        if self.change == "create":
            self.filters[KEY] = {"metadata": {"name": KEY[1], "namespace": KEY[0],
                                              "labels": {}}, "spec": {}}
        body = self.filters[KEY]
        for patch in body["spec"].get("configPatches", []):
            for option in patch["patch"]["value"]["socket_options"]:
                if option["name"] == 4:
                    option["int_value"] = 30
        body["metadata"]["managedFields"] = [
            {"manager": "kubectl-keepalive", "operation": "Update",
             "time": "2026-12-06T04:19:00Z"},
            {"manager": "kubectl-edit", "operation": "Update", "time": STAMP}]


def apply(fake: FakeCluster, plan: app.Plan, clock: FakeClock) -> None:
    applying.apply(fake, plan, SCOPE, restart=False, timeout=45, report=lambda _: None,
                   clock=clock, sleep=clock.sleep,
                   now=lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))


def test_enable_under_no_restart_names_the_other_writer_at_once() -> None:
    fake, clock = Racer("update"), FakeClock()
    plan = app.plan_enable(fake, SCOPE, SETTINGS, None, clock, clock.sleep)
    with pytest.raises(applying.PartialFailure) as caught:
        apply(fake, plan, clock)
    assert caught.value.exit_code == EXIT_CLUSTER
    message = str(caught.value)
    assert clock.now < 5, "found on the first verification read, not at the 45 s timeout"
    assert "was changed by another writer (field manager kubectl-edit at " + STAMP in message
    assert "it now sets on idle=30s interval=5s probes=2 on port(s) 8080, 8443" in message
    assert "while this run verified gateway istio-system/istio-ingressgateway" in message
    assert ("re-running this command replaces those settings with this run's (on idle=7s "
            "interval=5s probes=2)") in message
    assert "re-run the same command to finish" not in message
    assert "options not live" not in message
    assert [w[0] for w in fake.writes] == ["create"]


@pytest.mark.parametrize(("change", "says", "rerun"),
                         [("delete", "deleted by another writer (a disable?)",
                           "creates it again with this run's settings")])
def test_a_delete_meanwhile_is_named_too(change: str, says: str, rerun: str) -> None:
    fake, clock = Racer(change), FakeClock()
    plan = app.plan_enable(fake, SCOPE, SETTINGS, None, clock, clock.sleep)
    with pytest.raises(applying.PartialFailure) as caught:
        apply(fake, plan, clock)
    assert says in str(caught.value) and f"re-running this command {rerun}" in str(caught.value)
    assert clock.now < 5


def test_disable_under_no_restart_sees_the_filter_created_again() -> None:
    fake, clock = Racer("none"), FakeClock()
    fake.raced, fake.propagate = True, True  # no race while enabling, and istiod pushes
    apply(fake, app.plan_enable(fake, SCOPE, SETTINGS, None, clock, clock.sleep), clock)
    written = fake.filters[KEY]
    plan = app.plan_disable(fake, SCOPE, clock, clock.sleep)
    assert plan.gateways[0].action == "delete"
    fake.push_after_reads = 10_000  # istiod is slow to push the delete: pods still show ours

    def enabled_again() -> None:  # another enable writes it back right after our delete
        fake.filters[KEY] = {**written, "metadata": {
            **written["metadata"], "managedFields": [
                {"manager": "kubectl-keepalive", "operation": "Update", "time": STAMP}]}}

    fake.raced, fake._race = False, enabled_again  # type: ignore[method-assign]
    started = clock.now
    with pytest.raises(applying.PartialFailure) as caught:
        apply(fake, plan, clock)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_CLUSTER
    assert ("was created again by another writer (field manager kubectl-keepalive at "
            f"{STAMP}; it now sets on idle=7s interval=5s probes=2 on port(s) 8080, 8443)"
            in message)
    assert "re-running this command deletes it again" in message
    assert clock.now - started < 5


class WriteRacer(FakeCluster):
    """Another writer comes between this run's read and its write: the API server then refuses
    the write (the patch's resourceVersion test: 422; the delete's precondition: 409)."""

    def __init__(self, other: str | None) -> None:
        super().__init__(ingress())
        self.other = other  # "update", "delete", or None: refused for another reason

    def _other_writes(self) -> None:
        if self.other == "delete":
            del self.filters[KEY]
        elif self.other == "update":
            body = self.filters[KEY]
            for patch in body["spec"]["configPatches"]:
                for option in patch["patch"]["value"]["socket_options"]:
                    if option["name"] == 4:
                        option["int_value"] = 30
            body["metadata"]["managedFields"] = [
                {"manager": "kubectl-edit", "operation": "Update", "time": STAMP}]
            self.add_filter(body)

    def patch_envoyfilter(self, namespace: str, name: str, operations: list[dict[str, Any]],
                          dry_run: bool) -> dict[str, Any]:
        self._other_writes()
        raise ClusterError(f"patch envoyfilters.networking.istio.io in namespace {namespace} "
                           "failed: 422 the server rejected our request")

    def delete_envoyfilter(self, namespace: str, name: str, resource_version: str,
                           dry_run: bool) -> None:
        self._other_writes()
        raise ClusterError(f"delete envoyfilters.networking.istio.io in namespace {namespace} "
                           "failed: 409 Conflict")


def enabled(other: str | None) -> tuple[WriteRacer, FakeClock]:
    fake, clock = WriteRacer(other), FakeClock()
    apply(fake, app.plan_enable(fake, SCOPE, SETTINGS, None, clock, clock.sleep), clock)
    return fake, clock


@pytest.mark.parametrize(("other", "says", "rerun"), [
    ("update", "was changed by another writer (field manager kubectl-edit at "
               f"{STAMP}; it now sets on idle=30s interval=5s probes=2 on port(s) 8080, 8443) "
               "before this run's update",
     "replaces those settings with this run's (on idle=8s interval=5s probes=2 on port(s) "
     "8080, 8443)"),
    ("delete", "was deleted by another writer (a disable?) before this run's update",
     "creates it again with this run's settings")])
def test_an_update_refused_because_another_writer_came_first_is_named(
        other: str, says: str, rerun: str) -> None:
    fake, clock = enabled(other)
    plan = app.plan_enable(fake, SCOPE, KeepaliveSettings(8, 5, 2), None, clock, clock.sleep)
    with pytest.raises(applying.LostRace) as caught:
        apply(fake, plan, clock)
    assert caught.value.exit_code == EXIT_CLUSTER
    assert says in str(caught.value) and f"re-running this command {rerun}" in str(caught.value)


def test_a_delete_refused_because_of_an_update_is_named_and_one_after_a_delete_is_done(
        ) -> None:
    fake, clock = enabled("update")
    plan = app.plan_disable(fake, SCOPE, clock, clock.sleep)
    with pytest.raises(applying.LostRace, match="before this run's delete; re-running this "
                       "command deletes it again"):
        apply(fake, plan, clock)
    fake, clock = enabled("delete")
    apply(fake, app.plan_disable(fake, SCOPE, clock, clock.sleep), clock)  # nothing to raise
    assert KEY not in fake.filters


def test_a_write_refused_for_another_reason_is_raised_as_it_came() -> None:
    fake, clock = enabled(None)
    plan = app.plan_enable(fake, SCOPE, KeepaliveSettings(8, 5, 2), None, clock, clock.sleep)
    with pytest.raises(ClusterError, match="failed: 422") as caught:
        apply(fake, plan, clock)
    assert not isinstance(caught.value, applying.LostRace)
