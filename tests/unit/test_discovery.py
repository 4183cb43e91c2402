from __future__ import annotations

from kubectl_keepalive.discovery import group_gateways, selectors_to_list
from kubectl_keepalive.model import Deployment, Pod

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
    from kubectl_keepalive.kube import _pod

    def parsed(annotations: dict[str, str]) -> str | None:
        return _pod({"metadata": {"name": "p", "annotations": annotations}}).injected_revision

    assert parsed({"istio.io/rev": "canary"}) == "canary"
    assert parsed({"sidecar.istio.io/status": '{"revision": "1-20-2"}'}) == "1-20-2"
    assert parsed({"sidecar.istio.io/status": "not json"}) is None
    assert parsed({}) is None


def test_istio_labelled_pods_without_a_proxy_are_not_gateways() -> None:
    assert group_gateways([pod("x", {"istio": "ingressgateway"}, None, ("app",))], []) == []
    assert group_gateways([pod("p", {"istio": "pilot"}, None)], []) == []
    assert group_gateways([pod("p", {"istio": "pilot"}, None)], [], user_selected=True) != []


def test_discovery_selectors() -> None:
    assert selectors_to_list(None) == ["istio", "gateway.networking.k8s.io/gateway-name"]
    assert selectors_to_list("app=x") == ["app=x"]
