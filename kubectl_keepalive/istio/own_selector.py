"""One selector, one gateway: a filter's workloadSelector narrowed until it matches only the
pods of the gateway it is planned for. Pure.

Two Helm releases may share `istio=ingress`; a filter selecting by that label alone would patch
both gateways (and MERGE appends, so the other's options would be duplicated). A filter lives in
the gateway's namespace and reaches only that namespace's pods, so the pods to keep out are the
other proxies there that the selector matches. They are narrowed away with a label of the
gateway's own pod template that they lack, or the plan is refused naming both gateways.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubectl_keepalive.errors import ClusterError, UsageError
from kubectl_keepalive.istio import discovery
from kubectl_keepalive.model import Gateway, Pod

# Tried first, in this order: names the installers give one gateway and no other.
PREFERRED = ("app", "app.kubernetes.io/name", "app.kubernetes.io/instance",
             "gateway.networking.k8s.io/gateway-name", "service.istio.io/canonical-name",
             "istio")
# Never used: they change on their own (a new ReplicaSet, an upgrade, a revision move), and a
# filter selecting by them would stop reaching its gateway.
UNSTABLE = frozenset({"pod-template-hash", "controller-revision-hash", "pod-template-generation",
                      "istio.io/rev", "service.istio.io/canonical-revision", "version",
                      "app.kubernetes.io/version", "helm.sh/chart", "sidecar.istio.io/inject",
                      "security.istio.io/tlsMode"})
# Of those, the ones a pod gets from its controller or its revision rather than from the pod
# template as its owner wrote it. Offline, -l becomes the workloadSelector as given: these are
# refused there, since the filter would stop reaching the gateway at the next rollout or upgrade.
CONTROLLER_LABELS = ("pod-template-hash", "controller-revision-hash", "istio.io/rev",
                     "service.istio.io/canonical-revision")


@dataclass(frozen=True)
class Narrowed:
    """The selector to write, and the other gateways the base selector also matched."""

    labels: dict[str, str]
    others: tuple[str, ...] = ()


def selector_text(labels: Mapping[str, str]) -> str:
    """Equality labels as a label selector for listing pods."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def refuse_controller_labels(labels: Mapping[str, str]) -> None:
    """UsageError when `labels` (a workloadSelector taken from -l) name a label that a pod gets
    from its controller or its revision."""
    found = [key for key in CONTROLLER_LABELS if key in labels]
    if not found:
        return
    shown = ", ".join(f"{key}={labels[key]}" for key in found)
    raise UsageError(
        f"-l {shown}: pods get {', '.join(found)} from their "
        f"{'controller or revision' if len(found) > 1 else _source(found[0])}, so an "
        "EnvoyFilter selecting by it stops reaching the gateway when that changes (the next "
        "rollout or upgrade); pass -l with the Deployment's matchLabels (such as app=...), "
        "and --revision to label the filter for a revision"
    )


def _source(key: str) -> str:
    return "controller" if key in ("pod-template-hash", "controller-revision-hash") else "revision"


def reached(pod: Pod) -> bool:
    """Whether a GATEWAY-context EnvoyFilter selecting the pod reaches an Envoy in it."""
    return (discovery.PROXY_CONTAINER in pod.containers and not discovery.is_sidecar(pod)
            and not pod.terminating)


def narrow(gateway: Gateway, base: Mapping[str, str], pods: Iterable[Pod]) -> Narrowed:
    """`base` plus what it takes to leave out every other proxy among `pods` (the namespace's
    pods that `base` matches). Raises ClusterError when no stable template label does."""
    others = [p for p in pods if p.namespace == gateway.namespace and reached(p)
              and not _own(p, gateway) and _matches(p.labels, base)]
    if not others:
        return Narrowed(dict(base))
    names = tuple(sorted({f"{p.namespace}/{discovery.gateway_name_of(p)}" for p in others}))
    labels = dict(base)
    for key, value in _candidates(gateway):
        if key in labels:
            continue
        left_out = [p for p in others if p.labels.get(key) != value]
        if left_out:
            labels[key] = value
            others = [p for p in others if p not in left_out]
        if not others:
            return Narrowed(labels, names)
    shown = selector_text(base)
    raise ClusterError(
        f"gateway {gateway.namespace}/{gateway.name}: its selector {shown} also matches the "
        f"pods of {', '.join(names)}, and no label of its pod template tells them apart, so "
        "its EnvoyFilter would patch both: give the Deployments distinct labels (such as "
        "`app`), or pass -l with labels only its pods carry"
    )


def _own(pod: Pod, gateway: Gateway) -> bool:
    if gateway.deployment is not None:
        return discovery.owning_deployment(pod, [gateway.deployment]) is not None
    return discovery.gateway_name_of(pod) == gateway.name


def _candidates(gateway: Gateway) -> list[tuple[str, str]]:
    """Stable labels every pod of the gateway has (and its template, when there is one)."""
    source = (gateway.deployment.template_labels if gateway.deployment
              else (gateway.pods[0].labels if gateway.pods else {}))
    usable = {k: v for k, v in source.items()
              if k not in UNSTABLE and all(p.labels.get(k) == v for p in gateway.pods)}
    order = [k for k in PREFERRED if k in usable] + sorted(k for k in usable
                                                          if k not in PREFERRED)
    return [(k, usable[k]) for k in order]


def _matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
