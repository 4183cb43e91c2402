"""enable/disable planning waits, bounded, for a gateway whose new pods are still starting."""

from __future__ import annotations

import pytest

from kubectl_keepalive.errors import ClusterError, ForbiddenError, KeepaliveError
from kubectl_keepalive.kube.cluster import AdminRead
from kubectl_keepalive.model import Pod
from kubectl_keepalive.usecases import app
from kubectl_keepalive.usecases.app import DEFAULT_SETTINGS, Scope
from tests.support.clock import FakeClock
from tests.unit.fake_cluster import FakeCluster, FakeGateway

SCOPE = Scope("istio-system")


class StartingProxies(FakeCluster):
    """A fake whose proxies refuse the first `refusals` admin reads (still starting)."""

    def __init__(self, refusals: int, error: type[ClusterError] = ClusterError) -> None:
        super().__init__(FakeGateway("istio-system", "istio-ingressgateway",
                                     {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                                     [8080, 8443]))
        self.refusals = refusals
        self.error = error

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        if self.refusals > 0:
            self.refusals -= 1
            raise self.error("connection refused")
        return super().read_admin(pod, path, timeout)


def test_a_proxy_that_answers_after_a_few_seconds_is_planned_for() -> None:
    clock = FakeClock()
    plan = app.plan_enable(StartingProxies(refusals=3), SCOPE, DEFAULT_SETTINGS, None,
                           clock, clock.sleep)
    (gateway_plan,) = plan.gateways
    assert sorted(c.port for c in gateway_plan.ports) == [8080, 8443]
    assert clock.slept == [1.0, 1.0, 1.0]


# The error names each pod and why it could not be read.
UNREAD = r"no pod's listeners could be read \(\S+: connection refused\)"


def test_a_proxy_that_never_answers_fails_after_the_bound() -> None:
    clock = FakeClock()
    with pytest.raises(KeepaliveError, match=UNREAD):
        app.plan_enable(StartingProxies(refusals=10**6), SCOPE, DEFAULT_SETTINGS, None,
                        clock, clock.sleep)
    assert clock.now == pytest.approx(app.PLAN_SETTLE_S, abs=1.0)


def test_a_refusal_by_rbac_is_final_and_reported_without_waiting() -> None:
    clock = FakeClock()
    with pytest.raises(KeepaliveError, match=UNREAD):
        app.plan_enable(StartingProxies(refusals=10**6, error=ForbiddenError), SCOPE,
                        DEFAULT_SETTINGS, None, clock, clock.sleep)
    assert clock.slept == []


class UnconfiguredProxies(StartingProxies):
    """Ready pods whose Envoy answers `{}` (no dynamic listener) until istiod's first push."""

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        if self.refusals > 0 and path == app.ADMIN_LISTENERS_PATH:
            self.refusals -= 1
            return AdminRead(b"{}", "port-forward")
        return FakeCluster.read_admin(self, pod, path, timeout)


def test_a_ready_proxy_without_listeners_yet_is_waited_for() -> None:
    clock = FakeClock()
    plan = app.plan_enable(UnconfiguredProxies(refusals=2), SCOPE, DEFAULT_SETTINGS, None,
                           clock, clock.sleep)
    (gateway_plan,) = plan.gateways
    assert sorted(c.port for c in gateway_plan.ports) == [8080, 8443]
    assert clock.slept == [1.0, 1.0]
