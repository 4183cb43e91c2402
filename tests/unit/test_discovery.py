from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kubectl_keepalive.errors import ClusterError
from kubectl_keepalive.istio.discovery import decide_role, group_gateways, selectors_to_list
from kubectl_keepalive.istio.own_selector import narrow
from kubectl_keepalive.model import Deployment, Pod
from tests.unit.fake_cluster import (
    FakeCluster,
    FakeGateway,
    agentgateway,
    ambient_east_west,
    ambient_waypoint,
    gateway_api_ingress,
    helm_gateway,
    iop_east_west,
    iop_egress,
    iop_ingress,
)
from tests.unit.shared_selector import NAMESPACE, two_gateways_one_selector

PROXY = ("istio-proxy",)


def pod(name: str, labels: dict[str, str], rs: str | None, containers: tuple[str, ...] = PROXY,
        terminating: bool = False, namespace: str = "istio-system") -> Pod:
    return Pod(namespace, name, labels, "Running", True, terminating, rs, containers)


def test_pods_group_under_their_deployment_with_its_selector_and_revision() -> None:
    labels = {"app": "istio-ingressgateway", "istio": "ingressgateway",
              "pod-template-hash": "abc12", "istio.io/rev": "canary"}
    deployment = Deployment("istio-system", "istio-ingressgateway",
                            {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                            {"app": "istio-ingressgateway", "istio.io/rev": "canary"})
    pods = [
        pod("gw-2", labels, "istio-ingressgateway-abc12"),
        pod("gw-1", labels, "istio-ingressgateway-abc12"),
        pod("gw-old", labels, "istio-ingressgateway-abc12", terminating=True),
        pod("istiod-1", {"app": "istiod", "istio": "pilot"}, "istiod-x", ("discovery",)),
        pod("gw-1", labels, "istio-ingressgateway-abc12"),  # listed twice by two selectors
    ]
    (gateway,) = group_gateways(pods, [deployment])
    assert (gateway.namespace, gateway.name, gateway.revision) == (
        "istio-system", "istio-ingressgateway", "canary")
    assert gateway.selector == {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    assert [p.name for p in gateway.pods] == ["gw-1", "gw-2"]


def test_default_revision_is_not_a_revision_and_bare_pods_are_named_by_label() -> None:
    labels = {"gateway.networking.k8s.io/gateway-name": "web", "istio.io/rev": "default"}
    (gateway,) = group_gateways([pod("web-x", labels, None, namespace="apps")], [])
    assert (gateway.name, gateway.revision, gateway.deployment) == ("web", None, None)


def test_only_pods_pinned_to_their_injectors_revision_get_a_revision_labelled_filter() -> None:
    def gateway_revision(label: str | None, *injected: str) -> str | None:
        labels = {"app": "gw", "istio": "gw", "pod-template-hash": "h1"}
        if label:
            labels["istio.io/rev"] = label
        deployment = Deployment("gw-ns", "gw", {"app": "gw"}, dict(labels))
        pods = [Pod("gw-ns", f"gw-h1-{i}", labels, "Running", True, False, "gw-h1", PROXY,
                    injected_revision=rev or None) for i, rev in enumerate(injected)]
        (gateway,) = group_gateways(pods, [deployment])
        return gateway.revision

    # Pinned: label and injector agree, so only that revision's istiod need take the filter.
    assert gateway_revision("1-31-0", "1-31-0", "1-31-0") == "1-31-0"
    # A tag (`prod-stable`) or no label (namespace label, default tag): istiod never matches a
    # tag, and the tag moves at the next upgrade, so the filter carries no revision at all.
    assert gateway_revision("prod-stable", "1-31-0") is None
    assert gateway_revision(None, "1-31-0") is None
    # Half-way through an upgrade the pods come from two revisions: none either.
    assert gateway_revision("1-31-0", "1-31-0", "1-32-0") is None
    # Not injected (no record): the label is all there is.
    assert gateway_revision("canary", "") == "canary"


def test_the_injector_records_its_revision_in_the_pod_annotations() -> None:
    from kubectl_keepalive.kube.api import _pod

    def parsed(annotations: dict[str, str]) -> str | None:
        return _pod({"metadata": {"name": "p", "annotations": annotations}}).injected_revision

    assert parsed({"istio.io/rev": "canary"}) == "canary"
    assert parsed({"sidecar.istio.io/status": '{"revision": "1-20-2"}'}) == "1-20-2"
    assert parsed({"sidecar.istio.io/status": "not json"}) is None
    assert parsed({}) is None


def test_a_listed_pod_and_deployment_carry_what_the_plan_needs() -> None:
    """The drain inputs and the rollout come with the listing: the plan asks for neither."""
    from kubectl_keepalive.kube.api import _deployment, _pod

    pod = _pod({"metadata": {"name": "p", "annotations": {
        "proxy.istio.io/config": '{"drainDuration": "7s"}'}},
        "spec": {"terminationGracePeriodSeconds": 3}})
    assert (pod.proxy_config, pod.grace_period) == ('{"drainDuration": "7s"}', 3)
    bare = _pod({"metadata": {"name": "p", "annotations": {"proxy.istio.io/config": 5}}})
    assert (bare.proxy_config, bare.grace_period) == (None, None)
    listed = _deployment({"metadata": {"name": "gw", "generation": 4},
                          "spec": {"replicas": 2},
                          "status": {"observedGeneration": 3, "replicas": 2,
                                     "updatedReplicas": 1, "availableReplicas": 2}})
    assert listed.rollout is not None
    assert (listed.rollout.generation, listed.rollout.observed_generation,
            listed.rollout.updated_replicas) == (4, 3, 1)


def test_istio_labelled_pods_without_a_proxy_are_not_gateways() -> None:
    assert group_gateways([pod("x", {"istio": "ingressgateway"}, None, ("app",))], []) == []
    assert group_gateways([pod("p", {"istio": "pilot"}, None)], []) == []
    assert group_gateways([pod("p", {"istio": "pilot"}, None)], [], user_selected=True) != []


def test_discovery_selectors() -> None:
    assert selectors_to_list(None) == ["istio", "gateway.networking.k8s.io/gateway-name"]
    assert selectors_to_list("app=x") == ["app=x"]


# -- roles ------------------------------------------------------------------------------------


def roles_of(*gateways: FakeGateway) -> dict[str, tuple[str, str]]:
    """(role, proxy) per gateway, found the way `app.discover` finds them."""
    fake = FakeCluster(*gateways)
    pods = [p for sel in selectors_to_list(None) for p in fake.list_pods(None, sel)]
    return {g.name: (g.role, g.proxy)
            for g in group_gateways(pods, fake.list_deployments(None))}


def test_every_proxy_gets_the_role_its_installer_gives_it() -> None:
    assert roles_of(
        iop_ingress(), iop_egress(), iop_east_west(), ambient_east_west(),
        helm_gateway("istio-egress", "egress-ns", [80]),
        helm_gateway("cross-network", "istio-system", [15443], network="network1"),
        helm_gateway("public", "ingress-ns", [80, 443]),
        ambient_waypoint(), gateway_api_ingress(), agentgateway(),
    ) == {
        "istio-ingressgateway": ("ingress", "envoy"),
        "istio-egressgateway": ("egress", "envoy"),
        "istio-eastwestgateway": ("east-west", "envoy"),  # both: IstioOperator and ambient
        "istio-egress": ("egress", "envoy"),
        "cross-network": ("east-west", "envoy"),
        "public": ("ingress", "envoy"),
        "waypoint": ("waypoint", "envoy"),
        "web": ("ingress", "envoy"),
        "agw": ("ingress", "agentgateway"),
    }


def test_labels_that_every_proxy_may_carry_decide_nothing() -> None:
    # The injector copies the mesh network onto every injected pod, and istiod writes
    # `istio.io/dataplane-mode=none` on every Gateway API gateway: on the pod alone, neither
    # makes an east-west gateway or a waypoint.
    pod_only = {"app": "istio-ingressgateway", "istio": "ingressgateway",
                "topology.istio.io/network": "network1", "istio.io/dataplane-mode": "none"}
    template = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    assert decide_role(pod_only, template, ("proxy", "router")) == "ingress"
    assert decide_role(pod_only, None, ()) == "ingress"
    # ...whereas the args a waypoint runs with, or a network in the template, do.
    assert decide_role({"app": "mesh-gw"}, None, ("proxy", "waypoint")) == "waypoint"
    assert decide_role({"app": "gw"}, {"app": "gw", "topology.istio.io/network": "n"},
                       ()) == "east-west"
    # A release named for egress, however spelt; a word merely containing it is not.
    assert decide_role({"app": "team_egress_gw"}, None, ()) == "egress"
    assert decide_role({"app": "egressless"}, None, ()) == "ingress"


def test_sidecars_are_never_gateways_even_when_labelled_istio() -> None:
    sidecar = Pod("apps", "web-1", {"istio": "web"}, "Running", True, False, None, PROXY,
                  proxy_args=("proxy", "sidecar", "--domain", "x"))
    router = Pod("apps", "gw-1", {"istio": "gw"}, "Running", True, False, None, PROXY,
                 proxy_args=("proxy", "router"))
    assert [g.name for g in group_gateways([sidecar, router], [])] == ["gw"]
    assert group_gateways([sidecar], [], user_selected=True) == []


def test_the_proxy_args_are_read_from_the_istio_proxy_container() -> None:
    from kubectl_keepalive.kube.api import _pod

    item = {"metadata": {"name": "w"}, "spec": {"containers": [
        {"name": "app", "args": ["serve"]},
        {"name": "istio-proxy", "args": ["proxy", "waypoint", "--domain", "d"]}]}}
    assert _pod(item).proxy_args == ("proxy", "waypoint", "--domain", "d")
    assert _pod({"metadata": {"name": "a"}, "spec": {"containers": [
        {"name": "agentgateway", "args": ["-f"]}]}}).proxy_args == ()


# -- one selector, one gateway ----------------------------------------------------------------


def shared_selector(a_labels: dict[str, str], b_labels: dict[str, str]) -> tuple[Any, list[Pod]]:
    """The gateways and pods of two Deployments whose selectors are both `istio=ingress`."""
    fake = two_gateways_one_selector(a_labels, b_labels)
    pods = fake.list_pods(NAMESPACE, "istio=ingress")
    gateways = group_gateways(pods, fake.list_deployments(NAMESPACE))
    return gateways, pods


def test_a_selector_shared_by_two_gateways_is_narrowed_by_app_first() -> None:
    gateways, pods = shared_selector({"app": "gw-a", "tier": "edge"},
                                     {"app": "gw-b", "tier": "internal"})
    a = next(g for g in gateways if g.name == "gw-a")
    narrowed = narrow(a, a.selector, pods)
    assert narrowed.labels == {"istio": "ingress", "app": "gw-a"}
    assert narrowed.others == ("gw/gw-b",)
    # Only the other gateway's pods are kept out, never the gateway's own.
    assert all(p.labels.get("app") == "gw-a" for p in pods
               if all(p.labels.get(k) == v for k, v in narrowed.labels.items()))


def test_a_stable_label_serves_when_app_does_not_tell_them_apart() -> None:
    gateways, pods = shared_selector({"app": "gw", "pod-template-hash": "x", "tier": "edge"},
                                     {"app": "gw", "tier": "internal"})
    a = next(g for g in gateways if g.name == "gw-a")
    assert narrow(a, a.selector, pods).labels == {"istio": "ingress", "tier": "edge"}


def test_gateways_nothing_tells_apart_are_refused_naming_both() -> None:
    gateways, pods = shared_selector({"istio.io/rev": "1-31"}, {"istio.io/rev": "1-32"})
    a = next(g for g in gateways if g.name == "gw-a")
    with pytest.raises(ClusterError, match=r"gateway gw/gw-a: .* pods of gw/gw-b") as caught:
        narrow(a, a.selector, pods)
    assert caught.value.exit_code == 3


def test_pods_the_filter_cannot_reach_need_no_narrowing() -> None:
    gateways, pods = shared_selector({"app": "gw-a"}, {"app": "gw-b"})
    a = next(g for g in gateways if g.name == "gw-a")
    elsewhere = [replace(p, namespace="other") for p in pods]  # another namespace
    sidecars = [replace(p, proxy_args=("proxy", "sidecar")) for p in pods]
    agents = [replace(p, containers=("agentgateway",)) for p in pods]
    own = [p for p in pods if p.name.startswith("gw-a")]
    for seen in (elsewhere, sidecars, agents, own):
        others = [p for p in seen if not p.name.startswith("gw-a")]
        assert narrow(a, a.selector, own + others).labels == {"istio": "ingress"}
