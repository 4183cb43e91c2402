"""Which pods are ingress gateways, and which Deployment each belongs to. Pure.

The three install styles label their gateway pods differently (IstioOperator and the Helm chart
set `istio=...`, Gateway API deployments set `gateway.networking.k8s.io/gateway-name`), so
discovery lists pods by the existence of either label, then keeps those running an
`istio-proxy` container as a router (istiod also carries `istio=pilot`, but runs no proxy).
"""

from __future__ import annotations

from collections.abc import Iterable

from kubectl_keepalive.cluster import REVISION_LABEL
from kubectl_keepalive.model import Deployment, Gateway, Pod

PROXY_CONTAINER = "istio-proxy"
DISCOVERY_SELECTORS = ("istio", "gateway.networking.k8s.io/gateway-name")
_NOT_GATEWAYS = {"istio": {"pilot", "istiod"}}


def selectors_to_list(user_selector: str | None) -> list[str]:
    """Label selectors to list pods with: the user's, or one per well-known gateway label."""
    return [user_selector] if user_selector else list(DISCOVERY_SELECTORS)


def is_gateway_pod(pod: Pod, user_selected: bool) -> bool:
    if PROXY_CONTAINER not in pod.containers:
        return False
    if user_selected:
        return True
    return not any(pod.labels.get(key) in values for key, values in _NOT_GATEWAYS.items())


def owning_deployment(pod: Pod, deployments: Iterable[Deployment]) -> Deployment | None:
    """A pod's ReplicaSet is named `<deployment>-<pod-template-hash>`; match that, no extra GET."""
    template_hash = pod.labels.get("pod-template-hash")
    if not pod.replicaset or not template_hash:
        return None
    for deployment in deployments:
        if (deployment.namespace == pod.namespace
                and pod.replicaset == f"{deployment.name}-{template_hash}"):
            return deployment
    return None


def group_gateways(
    pods: Iterable[Pod], deployments: Iterable[Deployment], user_selected: bool = False
) -> list[Gateway]:
    """Gateways sorted by namespace and name, each with its live (not terminating) pods."""
    deployments = list(deployments)
    groups: dict[tuple[str, str], list[Pod]] = {}
    owners: dict[tuple[str, str], Deployment | None] = {}
    seen: set[tuple[str, str]] = set()
    for pod in pods:
        if (pod.namespace, pod.name) in seen or not is_gateway_pod(pod, user_selected):
            continue
        seen.add((pod.namespace, pod.name))
        deployment = owning_deployment(pod, deployments)
        name = deployment.name if deployment else _fallback_name(pod)
        key = (pod.namespace, name)
        groups.setdefault(key, []).append(pod)
        owners.setdefault(key, deployment)
    gateways = []
    for (namespace, name), members in sorted(groups.items()):
        deployment = owners[(namespace, name)]
        selector = dict(deployment.selector) if deployment else {}
        labels = deployment.template_labels if deployment else members[0].labels
        live = tuple(sorted((p for p in members if not p.terminating), key=lambda p: p.name))
        revision = filter_revision(live or tuple(members), labels)
        if revision == "default":
            # The default revision's istiod takes unlabelled (global) config; labelling a filter
            # `default` could hide it from an istiod whose revision name is empty.
            revision = None
        gateways.append(
            Gateway(namespace, name, selector, revision or None, live, deployment)
        )
    return gateways


def filter_revision(pods: tuple[Pod, ...], template_labels: dict[str, str]) -> str | None:
    """The `istio.io/rev` label the gateway's filter gets: None for none (every istiod takes it).

    istiod matches a config's label against its own revision only, never a revision tag. The
    injector records its revision on the pod; the filter names that revision only when the
    pods are pinned to it (their label says the same). Pods that follow a tag (label
    `prod-stable`, or a namespace label, or the default tag) get an unlabelled filter, which
    keeps working when the tag moves to the next revision; so do pods from two revisions (an
    upgrade half done). The workloadSelector still confines the filter to this gateway.
    Pods without an injector's record: their label is all there is.
    """
    label = template_labels.get(REVISION_LABEL) or (
        pods[0].labels.get(REVISION_LABEL) if pods else None)
    injected = {p.injected_revision for p in pods if p.injected_revision}
    if not injected:
        return label
    pinned = len(injected) == 1 and all(p.labels.get(REVISION_LABEL) in injected for p in pods)
    return injected.pop() if pinned else None


def _fallback_name(pod: Pod) -> str:
    """A gateway pod outside any Deployment is named after its best-known label."""
    for key in ("gateway.networking.k8s.io/gateway-name", "app", "istio"):
        if pod.labels.get(key):
            return pod.labels[key]
    return pod.name
