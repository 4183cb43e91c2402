"""Which pods are Istio proxies, what job each does, and which Deployment each belongs to. Pure.

The install styles label their proxy pods differently (IstioOperator and the Helm chart set
`istio=...`, Gateway API deployments, waypoints included, set
`gateway.networking.k8s.io/gateway-name`), so discovery lists pods by the existence of either
label, then keeps those running an `istio-proxy` container as a gateway or waypoint (istiod also
carries `istio=pilot`, but runs no proxy; sidecars run `proxy sidecar`, which no GATEWAY patch
reaches), and those running agentgateway, listed so that users see them, never patched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kubectl_keepalive.model import REVISION_LABEL, Deployment, Gateway, Pod

PROXY_CONTAINER = "istio-proxy"
AGENTGATEWAY_CONTAINER = "agentgateway"
DISCOVERY_SELECTORS = ("istio", "gateway.networking.k8s.io/gateway-name")
_NOT_GATEWAYS = {"istio": {"pilot", "istiod"}}

INGRESS, EGRESS, EAST_WEST, WAYPOINT = "ingress", "egress", "east-west", "waypoint"
ENVOY, AGENTGATEWAY = "envoy", "agentgateway"

CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
MANAGED_LABEL = "gateway.istio.io/managed"
NETWORK_LABEL = "topology.istio.io/network"

# What the installers write, as data. Sources (istio/istio, master of 2026-08):
# manifests/charts/istio-control/istio-discovery/files/{waypoint,kube-gateway,agentgateway,
# agentgateway-waypoint}.yaml (pod labels, `proxy waypoint` args), pilot/pkg/config/kube/
# gatewaycommon/classinfo.go and pkg/config/constants/constants.go (class names, controller
# labels), samples/multicluster/gen-eastwest-gateway.sh (IstioOperator east-west),
# manifests/charts/gateway (Helm: `networkGateway` labels the template with the network) and
# manifests/charts/gateways/istio-egress/values.yaml (egress labels). First match wins; east-west
# comes before waypoint because ambient east-west gateways are rendered from the waypoint
# template (`proxy waypoint` args) with their own class.
ROLE_LABELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (EAST_WEST, ((CLASS_LABEL, "istio-east-west"),
                 (MANAGED_LABEL, "istio.io-eastwest-controller"),
                 ("istio", "eastwestgateway"),
                 ("app", "istio-eastwestgateway"))),
    (WAYPOINT, ((CLASS_LABEL, "istio-waypoint"),
                (CLASS_LABEL, "istio-agentgateway-waypoint"),
                (MANAGED_LABEL, "istio.io-mesh-controller"),
                (MANAGED_LABEL, "istio.io-agentgateway-waypoint-controller"))),
    (EGRESS, (("istio", "egressgateway"),
              ("app", "istio-egressgateway"))),
)
# The Helm chart has no egress marker (its README's egress example only makes the Service
# ClusterIP): the release name becomes `app` and `istio`, so a release named for egress says it.
EGRESS_WORDS = frozenset({"egress", "egressgateway"})
EGRESS_NAME_LABELS = ("app", "istio", "gateway.networking.k8s.io/gateway-name")
AGENTGATEWAY_MANAGED = frozenset({"istio.io-agentgateway-controller",
                                  "istio.io-agentgateway-waypoint-controller"})
# Not used: `istio.io/dataplane-mode=none` is written on every Gateway API gateway when ambient
# waypoints are enabled (deploymentcontroller.go setLabelOverrides), and the injector copies the
# mesh network onto every injected pod's `topology.istio.io/network` (inject/webhook.go
# applyMetadata), so on a pod neither tells a waypoint or an east-west gateway apart.


def decide_role(labels: Mapping[str, str], template_labels: Mapping[str, str] | None,
                proxy_args: Sequence[str]) -> str:
    """The proxy's job from its pod labels, its Deployment's template labels and its args."""
    merged = {**labels, **(template_labels or {})}
    for role, pairs in ROLE_LABELS:
        if any(merged.get(key) == value for key, value in pairs):
            return role
    if template_labels and template_labels.get(NETWORK_LABEL):
        return EAST_WEST  # written into the template only by east-west installers
    if list(proxy_args[:2]) == ["proxy", "waypoint"]:
        return WAYPOINT
    words = {w for key in EGRESS_NAME_LABELS
             for w in merged.get(key, "").replace("_", "-").split("-")}
    return EGRESS if words & EGRESS_WORDS else INGRESS


def proxy_of(pod: Pod) -> str:
    """"agentgateway" for pods that run it instead of Envoy, else "envoy"."""
    if PROXY_CONTAINER in pod.containers:
        return ENVOY
    if (AGENTGATEWAY_CONTAINER in pod.containers
            or pod.labels.get(MANAGED_LABEL) in AGENTGATEWAY_MANAGED):
        return AGENTGATEWAY
    return ENVOY


def is_sidecar(pod: Pod) -> bool:
    """Injected sidecars run `proxy sidecar`; an EnvoyFilter with context GATEWAY skips them."""
    return list(pod.proxy_args[:2]) == ["proxy", "sidecar"]


def acted_on(gateway: Gateway, user_selected: bool) -> bool:
    """Whether diff, enable and disable act on a proxy: Envoy ingress gateways, or any Envoy
    proxy the user picked with -l (rolling other proxies disrupts traffic nobody asked about)."""
    return gateway.proxy == ENVOY and (gateway.role == INGRESS or user_selected)


def selectors_to_list(user_selector: str | None) -> list[str]:
    """Label selectors to list pods with: the user's, or one per well-known gateway label."""
    return [user_selector] if user_selector else list(DISCOVERY_SELECTORS)


def is_gateway_pod(pod: Pod, user_selected: bool) -> bool:
    if PROXY_CONTAINER not in pod.containers:
        return proxy_of(pod) == AGENTGATEWAY
    if is_sidecar(pod):
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


def gateway_name_of(pod: Pod) -> str:
    """The name discovery groups a pod under, without the Deployment list: its ReplicaSet's
    name less the template hash, else its best-known label."""
    template_hash = pod.labels.get("pod-template-hash")
    if pod.replicaset and template_hash and pod.replicaset.endswith(f"-{template_hash}"):
        return pod.replicaset[: -len(template_hash) - 1]
    return _fallback_name(pod)


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
        sample = (live or tuple(members))[0]
        role = decide_role(sample.labels, deployment.template_labels if deployment else None,
                           sample.proxy_args)
        gateways.append(
            Gateway(namespace, name, selector, revision or None, live, deployment, role,
                    proxy_of(sample))
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
