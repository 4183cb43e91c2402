"""Two gateways whose Deployments select the same pods: what narrowing a filter's selector is for.

Two Deployments in namespace `gw` whose selectors are both `istio=ingress` (two Helm releases
given the same `labels.istio` and a hand-made selector, say), over FakeCluster (a fake). Used by
the discovery tests (narrowing itself) and the role tests (what the CLI writes and refuses).
"""

from __future__ import annotations

from tests.unit.fake_cluster import FakeCluster, FakeGateway

NAMESPACE = "gw"
SELECTOR = {"istio": "ingress"}


def two_gateways_one_selector(a_labels: dict[str, str], b_labels: dict[str, str],
                              ports: tuple[int, int] = (80, 80)) -> FakeCluster:
    """Gateways gw-a and gw-b, whose pods carry `istio=ingress` and the labels given."""
    return FakeCluster(
        FakeGateway(NAMESPACE, "gw-a", {**SELECTOR, **a_labels}, [ports[0]],
                    selector=dict(SELECTOR)),
        FakeGateway(NAMESPACE, "gw-b", {**SELECTOR, **b_labels}, [ports[1]],
                    selector=dict(SELECTOR), template_hash="bbbb2"))
