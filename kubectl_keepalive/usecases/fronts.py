"""What stands in front of a gateway: its Services' ports, the balancer each one gets, and the
keepalive settings that stay under that balancer's idle timeout (diff's and enable's defaults
without --idle). Shared by doctor; kept apart so that diff and enable load nothing else of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.doctor import advice, balancers
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.model import Gateway, KeepaliveSettings
from kubectl_keepalive.usecases import app


@dataclass(frozen=True)
class FrontPort:
    """One Service port in front of a gateway listener port (the Service's targetPort)."""

    service: str | None
    port: int | None
    target_port: int
    balancer: balancers.Balancer


def services_of(gateway: Gateway, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Services in the gateway's namespace whose selector picks its pods; LoadBalancers first."""
    labels = gateway.pods[0].labels if gateway.pods else gateway.selector
    found = []
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if meta.get("namespace") != gateway.namespace or not selector:
            continue
        if all(labels.get(k) == v for k, v in selector.items()):
            found.append(svc)
    return sorted(found, key=lambda s: ((s.get("spec") or {}).get("type") != "LoadBalancer",
                                        (s.get("metadata") or {}).get("name", "")))


def front_ports(gateway: Gateway, services: list[dict[str, Any]],
                provider_ids: list[str] | None) -> list[FrontPort]:
    """Each Service port with a numeric targetPort, and the balancer Kubernetes says fronts it."""
    fronts = []
    for svc in services_of(gateway, services):
        name = str((svc.get("metadata") or {}).get("name", ""))
        for port in (svc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if not isinstance(target, int) or target in app.BOOTSTRAP_PORTS:
                continue
            number = int(port.get("port", target))
            balancer = balancers.detect(svc, provider_ids or (), port=number)
            fronts.append(FrontPort(name, number, target, balancer))
    return fronts


NODES_FORBIDDEN = ("cannot list nodes (forbidden; RBAC: list nodes at cluster scope), so their "
                   "spec.providerID was not read")
NOTHING_MISSING = "the Services told their balancers, so nothing is missing"


def nodes_note(provider_ids: list[str] | None, fronts: list[FrontPort]) -> str | None:
    """What a forbidden node list hides: only Services that nothing but the cloud tells."""
    if provider_ids is not None:
        return None
    blind = [f for f in fronts if f.balancer.detected_by.startswith("provider IDs")]
    if not blind:
        return f"{NODES_FORBIDDEN}; {NOTHING_MISSING}"
    where = ", ".join(sorted({f"{f.service}:{f.port}" for f in blind}))
    return (f"{NODES_FORBIDDEN}: the balancer in front of {where} is unknown (on a cloud the "
            "nodes would tell it and its default idle timeout, e.g. AWS CLB 60 s, Azure 4 min); "
            "declare it with the keepalive.kubectl-plugin.io annotations or allow list nodes")


@dataclass(frozen=True)
class Recommendation:
    settings: KeepaliveSettings
    reason: str


def recommend(cluster: Cluster, gateways: Sequence[Gateway]) -> Recommendation | None:
    """Keepalive below the shortest known packet-counting idle timer in front of `gateways`
    (those the plan acts on).

    None when no such timer is known (the caller keeps its defaults). Balancers that count only
    data are reported in the reason: keepalive will not save requests behind them.
    """
    namespaces = sorted({g.namespace for g in gateways})
    services = [s for ns in namespaces for s in cluster.list_services(ns)]
    provider_ids = cluster.node_provider_ids()
    l4: list[FrontPort] = []
    l7: list[FrontPort] = []
    fronts = [f for g in gateways for f in front_ports(g, services, provider_ids)]
    for front in fronts:
        if front.balancer.layer is balancers.Layer.L4 and front.balancer.idle_timeout_s:
            l4.append(front)
        elif front.balancer.layer is balancers.Layer.L7:
            l7.append(front)
    notes = [f"keepalive will not help behind {f.service}:{f.port} ({f.balancer.kind} counts "
             "only data)" for f in l7]
    blind = nodes_note(provider_ids, fronts)
    if blind and not blind.endswith(NOTHING_MISSING):
        notes.append(blind)
    if not l4:
        return None if not notes else Recommendation(app.DEFAULT_SETTINGS, "; ".join(notes))
    shortest = min(l4, key=lambda f: f.balancer.idle_timeout_s or 0)
    advised = advice.recommend_keepalive(float(shortest.balancer.idle_timeout_s or 0),
                                         default=app.DEFAULT_SETTINGS)
    reason = (f"{shortest.balancer.kind} in front of Service {shortest.service} port "
              f"{shortest.port} drops idle flows after {shortest.balancer.idle_timeout_s}s "
              f"({shortest.balancer.source}): {advised.reason}")
    return Recommendation(advised.settings, "; ".join([reason, *notes]))
