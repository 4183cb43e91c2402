"""Use case: every timer that can cut a long request through each gateway, and which fires first.

Reads the gateway's Service (what balancer is in front, and its idle timeout), the nodes' provider
IDs, and one pod's full Envoy config dump (listeners, routes and clusters); the doctor package
decides. Returns data; `commands` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.doctor import analysis, balancers, timers
from kubectl_keepalive.errors import EXIT_CHANGES, EXIT_OK, EXIT_UNKNOWN, KeepaliveError
from kubectl_keepalive.istio import discovery
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.model import Gateway
from kubectl_keepalive.usecases import app
from kubectl_keepalive.usecases.fronts import FrontPort, front_ports, nodes_note

FULL_DUMP_PATH = "config_dump"  # routes and clusters are needed too, not only listeners


@dataclass(frozen=True)
class PortDiagnosis:
    gateway: Gateway
    front: FrontPort
    report: analysis.Report


@dataclass(frozen=True)
class Diagnosis:
    ports: tuple[PortDiagnosis, ...]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be read, and what that changes

    @property
    def exit_code(self) -> int:
        """A port that is cut decides (1); else one that cannot be told (6); else 0."""
        codes = {p.report.exit_code for p in self.ports}
        for decisive in (EXIT_CHANGES, EXIT_UNKNOWN):
            if decisive in codes:
                return decisive
        return EXIT_OK


def acted_on(cluster: Cluster, scope: app.Scope) -> list[Gateway]:
    """The gateways doctor and the balancer-aware defaults look at: those enable would patch
    (Envoy ingress gateways, or what -l picks); agentgateway pods have no Envoy admin to read."""
    found = app.discover(cluster, scope)
    chosen = [g for g in found if discovery.acted_on(g, bool(scope.selector))]
    if not chosen:
        app.require_gateways_found(scope, found)
    return chosen


def diagnose(cluster: Cluster, scope: app.Scope, profile: analysis.Profile) -> Diagnosis:
    from kubectl_keepalive.usecases import background

    gateways = acted_on(cluster, scope)
    namespaces = sorted({g.namespace for g in gateways})

    def fronts_read() -> tuple[list[dict[str, Any]], list[str] | None]:
        return ([s for ns in namespaces for s in cluster.list_services(ns)],
                cluster.node_provider_ids())

    # The Services and nodes are listed while the pods' dumps are read.
    fronts_later = background.started(fronts_read)
    problems: list[str] = []
    dumps = [(gateway, _full_dump(cluster, gateway, scope, problems)) for gateway in gateways]
    services, provider_ids = fronts_later()
    out: list[PortDiagnosis] = []
    all_fronts: list[FrontPort] = []
    for gateway, dump in dumps:
        if dump is None:
            continue
        fronts = front_ports(gateway, services, provider_ids)
        all_fronts += fronts
        live_ports = set(timers.ports(dump))
        if not fronts:
            none = balancers.detect({}, provider_ids or ())
            fronts = [FrontPort(None, None, p, none) for p in sorted(live_ports)
                      if p not in app.BOOTSTRAP_PORTS]
        for front in fronts:
            if front.target_port not in live_ports:
                problems.append(f"gateway {gateway.namespace}/{gateway.name}: Service "
                                f"{front.service} port {front.port} targets {front.target_port}, "
                                "where the gateway has no listener")
                continue
            port_timers = timers.read_port(dump, front.target_port)
            report = analysis.analyze(port_timers, front.balancer, profile,
                                      analysis.drain_timers())
            out.append(PortDiagnosis(gateway, front, report))
    note = nodes_note(provider_ids, all_fronts)
    return Diagnosis(tuple(out), tuple(problems), (note,) if note else ())


def _full_dump(cluster: Cluster, gateway: Gateway, scope: app.Scope,
               problems: list[str]) -> dict[str, Any] | None:
    """The first readable running pod's full dump: one pod speaks for its gateway's config."""
    for pod in gateway.pods:
        if pod.phase != "Running":
            continue
        try:
            read = cluster.read_admin(pod, FULL_DUMP_PATH, scope.pod_timeout)
            return timers.load(read.body)
        except KeepaliveError as exc:
            problems.append(f"pod {pod.namespace}/{pod.name}: {exc}")
    problems.append(f"gateway {gateway.namespace}/{gateway.name}: no pod's config could be read")
    return None
