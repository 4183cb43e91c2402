"""Use cases: status, and the plans of diff, enable and disable (`applying` carries a plan out).
They return reports and never print.

Data moves one way: the cluster is read once into records, pure modules decide, and the only
writes are the managed EnvoyFilter and the Deployment restart annotation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn

from kubectl_keepalive.envoy import envoy_dump, sockopts
from kubectl_keepalive.errors import (
    ClusterError,
    ForbiddenError,
    KeepaliveError,
    UsageError,
)
from kubectl_keepalive.istio import envoyfilter
from kubectl_keepalive.model import Gateway, KeepaliveSettings, Listener, ListenerState, Pod

# Imported where used: `status --from-file` needs none of these (start-up time).
if TYPE_CHECKING:
    from kubectl_keepalive.envoy import inflight, sockets
    from kubectl_keepalive.kube.cluster import Cluster
    from kubectl_keepalive.usecases import drainplan, planreads

ADMIN_LISTENERS_PATH = "config_dump?resource=dynamic_listeners"
BOOTSTRAP_PORTS = frozenset({15000, 15021, 15090})  # admin, health, prometheus: never patched
DEFAULT_SETTINGS = KeepaliveSettings(idle=60, interval=10, probes=3)
DEFAULT_ROOT_NAMESPACE = "istio-system"
# How long enable/disable wait for a gateway whose pods are all still starting (a rollout in
# progress: the new pod runs, its proxy does not answer yet) before planning without them.
PLAN_SETTLE_S = 20.0
AGENTGATEWAY_NOTE = "runs agentgateway, not Envoy: an EnvoyFilter cannot set its keepalive"

Report = Callable[[str], None]


@dataclass(frozen=True)
class Scope:
    """Where to look: one namespace or all (None), and an optional pod label selector."""

    namespace: str | None
    selector: str | None = None
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    parallel: int = 16
    pod_timeout: float = 10.0


@dataclass(frozen=True)
class PodListeners:
    pod: Pod | None
    listeners: tuple[Listener, ...] = ()
    error: str | None = None
    via: str | None = None
    note: str | None = None  # e.g. a pod not running yet: nothing to read, not a failure
    connections: dict[int, sockets.Connections] | None = field(default=None, hash=False)
    sockets_error: str | None = None
    # The error may pass by itself (no answer yet), unlike a refusal by RBAC or a bad dump.
    transient: bool = False
    # Per port, the stat prefixes the listener's filter chains name (in-flight counting).
    stat_prefixes: dict[int, inflight.Prefixes] = field(default_factory=dict, hash=False)
    # /stats read in the same stream as the listeners (plans only; None when not read).
    stats: bytes | None = field(default=None, compare=False)


@dataclass(frozen=True)
class GatewayStatus:
    gateway: Gateway
    pods: tuple[PodListeners, ...]
    managed_filter: dict[str, Any] | None = field(default=None, hash=False)
    managed_settings: dict[int, KeepaliveSettings | None] = field(default_factory=dict,
                                                                   hash=False)
    foreign: tuple[envoyfilter.ForeignFilter, ...] = ()


@dataclass(frozen=True)
class StatusReport:
    gateways: tuple[GatewayStatus, ...]
    notices: tuple[str, ...] = ()

    @property
    def failed_pods(self) -> int:
        return sum(1 for g in self.gateways for p in g.pods if p.error)


# -- reading ----------------------------------------------------------------------------------


def discover(cluster: Cluster, scope: Scope) -> list[Gateway]:
    from kubectl_keepalive.istio import discovery

    pods: list[Pod] = []
    for selector in discovery.selectors_to_list(scope.selector):
        pods.extend(cluster.list_pods(scope.namespace, selector))
    if not pods:
        return []
    deployments = cluster.list_deployments(scope.namespace)
    return discovery.group_gateways(pods, deployments, user_selected=bool(scope.selector))


def read_pods(cluster: Cluster, pods: Iterable[Pod], scope: Scope,
              with_sockets: bool = False, with_stats: bool = False) -> dict[str, PodListeners]:
    """Every pod's live listeners, in parallel with a bound; a failed pod is reported, not fatal.

    With `with_sockets`, also the kernel's view: `ss` in the proxy container counts established
    connections per port and those with keepalive timers (what the options really did). With
    `with_stats`, also Envoy's /stats in the same stream (the plan's in-flight counts).
    """

    from kubectl_keepalive.envoy import inflight, sockets

    def one(pod: Pod) -> PodListeners:
        try:
            read, *extra = cluster.read_admin_all(
                pod, [ADMIN_LISTENERS_PATH, *([inflight.STATS_PATH] if with_stats else [])],
                scope.pod_timeout)
            stats = next((e.body for e in extra if e.error is None), None)
            document = envoy_dump.load(read.body)  # one parse for listeners and prefixes
            listeners = PodListeners(pod, tuple(envoy_dump.parse_loaded(document, read.body)),
                                     via=read.via, stat_prefixes=_prefixes(document),
                                     stats=stats)
        except KeepaliveError as exc:
            if exc.exit_code == UsageError.exit_code:
                return PodListeners(pod, error=f"unreadable listener config: {exc}")
            return PodListeners(pod, error=str(exc),
                                transient=not isinstance(exc, ForbiddenError))
        if not with_sockets:
            return listeners
        try:
            shown = cluster.exec_proxy(pod, sockets.SS_COMMAND, scope.pod_timeout)
        except KeepaliveError as exc:
            return replace(listeners, sockets_error=str(exc))
        counted = sockets.count_by_local_port(shown.decode(errors="replace"))
        return replace(listeners, connections=counted)

    pods = [p for p in pods if p.phase == "Running"]
    if len(pods) <= 1 or scope.parallel <= 1:  # no pool to start (or import) for one pod
        results = [one(p) for p in pods]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(scope.parallel, len(pods))) as pool:
            results = list(pool.map(one, pods))
    return {f"{r.pod.namespace}/{r.pod.name}": r for r in results if r.pod}


def _prefixes(document: Any) -> dict[int, inflight.Prefixes]:
    """Stat prefixes per port; a dump that parsed as listeners but not here only costs the
    in-flight split (every connection then counts as in flight)."""
    from kubectl_keepalive.envoy import inflight

    try:
        return inflight.listener_prefixes(document)
    except (ValueError, TypeError, AttributeError):
        return {}


def status(cluster: Cluster, scope: Scope, with_sockets: bool = False,
           with_stats: bool = False,
           beside: Callable[[list[Gateway]], None] | None = None) -> StatusReport:
    """Every gateway's pods and listeners, and the EnvoyFilters that reach them.

    The REST reads that need only the gateways found (the filters, and `beside`: a plan's own)
    run on a second thread while the pods' Envoys are read through their streams.
    """
    from kubectl_keepalive.istio import discovery
    from kubectl_keepalive.usecases import background

    gateways = discover(cluster, scope)
    if not gateways:
        return StatusReport(())

    def rest_reads() -> _Filters:
        found = _filters_by_namespace(cluster, {g.namespace for g in gateways}, scope)
        if beside is not None:
            beside(gateways)
        return found

    filters_read = background.started(rest_reads)
    envoys = (p for g in gateways if g.proxy == discovery.ENVOY for p in g.pods)
    reads = read_pods(cluster, envoys, scope, with_sockets, with_stats)
    filters = filters_read()
    out = []
    for gateway in gateways:
        pods = tuple(
            reads.get(f"{p.namespace}/{p.name}", PodListeners(p, note=_unread_note(gateway, p)))
            for p in gateway.pods
        )
        managed = _managed_filter_of(filters, gateway)
        ports = {lst.port for p in pods for lst in p.listeners if lst.port}
        foreign = envoyfilter.foreign_keepalive_filters(
            _candidate_filters(filters, gateway, scope), gateway, ports, scope.root_namespace
        )
        out.append(
            GatewayStatus(
                gateway,
                pods,
                managed,
                envoyfilter.settings_in(managed) if managed else {},
                tuple(foreign),
            )
        )
    notices = tuple(getattr(cluster, "notices", ())) + tuple(filters.notices)
    notices += tuple(f"{_label(g)} {AGENTGATEWAY_NOTE}; it is listed, never patched"
                     for g in gateways if g.proxy == discovery.AGENTGATEWAY)
    return StatusReport(tuple(out), notices)


def _unread_note(gateway: Gateway, pod: Pod) -> str:
    from kubectl_keepalive.istio import discovery

    if gateway.proxy == discovery.AGENTGATEWAY:
        return AGENTGATEWAY_NOTE
    return f"pod is {pod.phase}"


def _label(gateway: Gateway) -> str:
    from kubectl_keepalive.istio import discovery

    kind = "waypoint" if gateway.role == discovery.WAYPOINT else f"{gateway.role} gateway"
    return f"{kind} {gateway.namespace}/{gateway.name}"


def status_from_file(raw: bytes | str) -> StatusReport:
    listeners = tuple(envoy_dump.parse(raw))
    gateway = Gateway(namespace="", name="")
    return StatusReport((GatewayStatus(gateway, (PodListeners(None, listeners),)),))


class _Filters(dict[str, list[dict[str, Any]]]):
    """EnvoyFilters by namespace, plus notices about namespaces that could not be listed."""

    def __init__(self) -> None:
        super().__init__()
        self.notices: list[str] = []


def _filters_by_namespace(cluster: Cluster, namespaces: set[str], scope: Scope) -> _Filters:
    found = _Filters()
    if scope.namespace is None:
        everything = cluster.list_envoyfilters(None)
        for ns in sorted(namespaces | {scope.root_namespace}):
            found[ns] = [f for f in everything if _ns(f) == ns]
        return found
    for ns in sorted(namespaces):
        found[ns] = cluster.list_envoyfilters(ns)
    if scope.root_namespace not in found:
        try:
            found[scope.root_namespace] = cluster.list_envoyfilters(scope.root_namespace)
        except ForbiddenError:
            # Gateway owners often may not read Istio's root namespace: say what goes unchecked.
            found.notices.append(
                f"cannot list EnvoyFilters in Istio's root namespace {scope.root_namespace} "
                "(forbidden): filters there that also set keepalive were not checked"
            )
    return found


def _candidate_filters(
    filters: _Filters, gateway: Gateway, scope: Scope
) -> list[dict[str, Any]]:
    names = {gateway.namespace, scope.root_namespace}
    return [f for ns in sorted(names) for f in filters.get(ns, [])]


def _managed_filter_of(
    filters: _Filters, gateway: Gateway
) -> dict[str, Any] | None:
    name = envoyfilter.managed_name(gateway.name)
    for obj in filters.get(gateway.namespace, []):
        if (obj.get("metadata") or {}).get("name") == name and envoyfilter.is_managed(obj):
            return obj
    return None


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def sync_state(listener: Listener, wanted: KeepaliveSettings | None) -> str | None:
    """How a listener stands against the managed filter: applied, pending, rejected or None."""
    if wanted is None or listener.protocol != "TCP" or listener.static:
        return None
    if listener.state is ListenerState.REJECTED:
        return "rejected"
    if listener.state is ListenerState.ACTIVE and sockopts.listener_keepalive(listener).matches(
        wanted
    ):
        return "applied"
    if listener.state is ListenerState.DRAINING:
        return None
    return "pending"


# -- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortChange:
    port: int
    listener_name: str | None
    before: str  # human text of the live keepalive on that port across pods
    after: str


@dataclass(frozen=True)
class GatewayPlan:
    gateway: Gateway
    current: dict[str, Any] | None = field(hash=False)
    wanted: dict[str, Any] | None = field(hash=False)
    action: str  # "create", "update", "delete" or "none"
    ports: tuple[PortChange, ...]
    live_matches: bool  # every readable pod already shows the wanted state on every port
    foreign: tuple[envoyfilter.ForeignFilter, ...]
    unreadable_pods: tuple[str, ...] = ()
    rollout_incomplete: str | None = None  # an earlier rollout still running or stuck
    # What the change cuts and when (read only when the plan changes something).
    drain: drainplan.GatewayDrain | None = field(default=None, hash=False)
    targets: tuple[drainplan.Target, ...] = field(default=(), hash=False)

    @property
    def writes(self) -> bool:
        return self.action != "none"

    @property
    def needs_restart(self) -> bool:
        # A rollout already under way (an earlier run's restart, say) brings up pods with the
        # filter as it stands: wait for it and verify; restarting again would only cut more.
        return self.writes or (not self.live_matches and self.rollout_incomplete is None)

    @property
    def changes(self) -> bool:
        return self.needs_restart or self.rollout_incomplete is not None


@dataclass(frozen=True)
class Plan:
    gateways: tuple[GatewayPlan, ...]
    settings: KeepaliveSettings | None  # None: disable
    notices: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return any(g.changes for g in self.gateways)


def _starting(gw: GatewayStatus) -> bool:
    """Every pod of the gateway is not ready yet or did not answer: proxies still starting.
    A refusal (RBAC) or an unreadable dump is final and is reported at once."""
    from kubectl_keepalive.istio import discovery

    def starting(p: PodListeners) -> bool:
        if p.error:
            return p.transient
        no_listeners = not any(lst.protocol == "TCP" and not lst.static for lst in p.listeners)
        # An Envoy that answers with no dynamic listener at all has not had istiod's first
        # push yet (kwok, like a pod without a readiness gate, may call it ready already).
        unconfigured = not any(not lst.static for lst in p.listeners)
        return p.pod is not None and no_listeners and (not p.pod.ready or unconfigured)

    # agentgateway is never read nor planned for: nothing to wait for.
    envoy = gw.gateway.proxy == discovery.ENVOY
    return envoy and bool(gw.pods) and all(starting(p) for p in gw.pods)


def status_for_plan(cluster: Cluster, scope: Scope,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep,
                    beside: Callable[[list[Gateway]], None] | None = None) -> StatusReport:
    """Status, read again while a gateway to act on has pods but all are still starting
    (bounded)."""
    from kubectl_keepalive.istio import discovery

    deadline = clock() + PLAN_SETTLE_S
    while True:
        report = status(cluster, scope, with_stats=True, beside=beside)
        acted = [g for g in report.gateways if discovery.acted_on(g.gateway, bool(scope.selector))]
        if not any(_starting(g) for g in acted) or clock() >= deadline:
            return report
        sleep(1.0)


def _plan_reads(cluster: Cluster, scope: Scope,
                settings: KeepaliveSettings | planreads.SettingsFor | None,
                ) -> planreads.PlanReads:
    from kubectl_keepalive.usecases import planreads

    return planreads.PlanReads(cluster, scope.root_namespace, bool(scope.selector),
                               lambda gateway: _base_selector(gateway, scope), settings)


def plan_enable(
    cluster: Cluster, scope: Scope, settings: KeepaliveSettings | planreads.SettingsFor,
    ports: list[int] | None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> Plan:
    """`settings` may depend on the gateways acted on (the balancers in front of them): then it
    is asked once they are found, so that nothing is discovered twice."""
    from kubectl_keepalive.istio import own_selector

    reads = _plan_reads(cluster, scope, settings)
    report = status_for_plan(cluster, scope, clock, sleep, beside=reads.read)
    acted, notices = _acted_on(report, scope)
    wanted_settings = reads.settings([gw.gateway for gw in acted])
    plans = []
    for gw in acted:
        targets = _targets(gw, ports)
        selected, shared = _with_user_selector(gw.gateway, scope, reads.pods)
        if shared:
            notices.append(
                f"{_label(gw.gateway)}: its selector also matches the pods of "
                f"{', '.join(shared)}; its EnvoyFilter selects "
                f"{own_selector.selector_text(selected.selector)} to leave them out")
        wanted = envoyfilter.for_gateway(selected, targets, wanted_settings)
        current = gw.managed_filter
        if current is None:
            action = "create"
        elif envoyfilter.comparable(current) != envoyfilter.comparable(wanted):
            action = "update"
        else:
            action = "none"
        changes, live_ok = _port_changes(gw, [t.port for t in targets], wanted_settings)
        plans.append(
            GatewayPlan(gw.gateway, current, wanted, action, tuple(changes), live_ok,
                        gw.foreign, _unreadable(gw), _rollout_incomplete(cluster, gw.gateway),
                        targets=_drain_targets(gw))
        )
    return _with_drain(cluster, scope, reads.meshes,
                       Plan(tuple(plans), wanted_settings, report.notices + tuple(notices)))


def plan_disable(cluster: Cluster, scope: Scope,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Plan:
    reads = _plan_reads(cluster, scope, None)
    report = status_for_plan(cluster, scope, clock, sleep, beside=reads.read)
    acted, notices = _acted_on(report, scope)
    plans = []
    for gw in acted:
        ports = sorted(gw.managed_settings)
        changes, live_ok = _port_changes(gw, ports, None)
        kept = kept_by_foreign(gw.foreign, ports)
        # Where another filter also sets keepalive, removing ours leaves its options on.
        changes = [replace(c, after=f"on (from EnvoyFilter {filter_names(gw.foreign)})")
                   if c.port in kept else c for c in changes]
        if gw.managed_filter is None:
            # Nothing of ours to remove; keepalive from someone else's filter is not ours to undo.
            live_ok = True
        plans.append(
            GatewayPlan(gw.gateway, gw.managed_filter, None,
                        "delete" if gw.managed_filter else "none", tuple(changes), live_ok,
                        gw.foreign, _unreadable(gw), _rollout_incomplete(cluster, gw.gateway),
                        targets=_drain_targets(gw))
        )
    return _with_drain(cluster, scope, reads.meshes,
                       Plan(tuple(plans), None, report.notices + tuple(notices)))


def _drain_targets(gw: GatewayStatus) -> tuple[drainplan.Target, ...]:
    from kubectl_keepalive.usecases import drainplan

    return tuple(drainplan.Target(p.pod, p.stat_prefixes, p.stats) for p in gw.pods
                 if p.pod is not None and not p.error and p.listeners)


def drain_ports(gp: GatewayPlan) -> list[int]:
    """The ports whose listeners the change replaces (or the rollout ends)."""
    return sorted({c.port for c in gp.ports})


def _with_drain(cluster: Cluster, scope: Scope, meshes: drainplan.MeshConfigs,
                plan: Plan) -> Plan:
    """Before asking: what is in flight on the ports to change, and when it will be cut."""
    from kubectl_keepalive.usecases import drainplan

    gateways = []
    for gp in plan.gateways:
        ports = drain_ports(gp)
        if gp.changes and ports and gp.targets:
            gp = replace(gp, drain=drainplan.measure(cluster, gp.gateway, gp.targets, ports,
                                                     meshes, scope.pod_timeout))
        gateways.append(gp)
    return replace(plan, gateways=tuple(gateways))


def kept_by_foreign(foreign: Iterable[envoyfilter.ForeignFilter],
                    ports: Iterable[int]) -> list[int]:
    """The ports on which foreign filters set keepalive (what disabling ours leaves on)."""
    covered = {p for f in foreign for p in f.ports}
    return sorted(p for p in ports if None in covered or p in covered)


def filter_names(foreign: Iterable[envoyfilter.ForeignFilter]) -> str:
    return ", ".join(f"{f.namespace}/{f.name}" for f in foreign)


def _acted_on(report: StatusReport, scope: Scope) -> tuple[list[GatewayStatus], list[str]]:
    """The gateways diff, enable and disable act on, and notices about the rest.

    Ingress gateways only, unless -l selects proxies explicitly: then all it selects, said
    aloud, since rolling an egress or east-west gateway disrupts traffic nobody else asked
    about. agentgateway never: no EnvoyFilter reaches it.
    """
    from kubectl_keepalive.istio import discovery

    acted: list[GatewayStatus] = []
    notices: list[str] = []
    skipped: list[Gateway] = []
    chosen: list[Gateway] = []
    for gw in report.gateways:
        gateway = gw.gateway
        if gateway.proxy == discovery.AGENTGATEWAY:
            notices.append(f"{_label(gateway)} {AGENTGATEWAY_NOTE}; skipped")
            skipped.append(gateway)
        elif discovery.acted_on(gateway, bool(scope.selector)):
            acted.append(gw)
            if gateway.role != discovery.INGRESS:
                chosen.append(gateway)
        else:
            skipped.append(gateway)
            if gw.managed_filter is not None:
                notices.append(f"{_label(gateway)} has a keepalive EnvoyFilter of ours; "
                               "select it with -l to change or remove it")
    if chosen:
        notices.append(
            f"-l {scope.selector} selects proxies that are not ingress gateways: "
            f"{', '.join(_label(g) for g in chosen)}; the plan covers them, and carrying it out "
            "rolls them")
    others = [g for g in skipped if g.proxy == discovery.ENVOY]
    if others and acted:
        notices.append(f"not ingress gateways, left alone: {', '.join(_label(g) for g in others)}"
                       " (select them with -l to act on them)")
    if not acted:
        require_gateways_found(scope, skipped)
    return acted, notices


def require_gateways_found(scope: Scope, skipped: Iterable[Gateway] = ()) -> NoReturn:
    from kubectl_keepalive.istio import discovery

    where = f"namespace {scope.namespace}" if scope.namespace else "any namespace"
    how = f"matching -l {scope.selector}" if scope.selector else "(pods labelled `istio` or "
    how += "" if scope.selector else "`gateway.networking.k8s.io/gateway-name`)"
    message = f"no Istio ingress gateway found in {where} {how}"
    found = [f"{_label(g)}" + (" (agentgateway, not Envoy)"
                               if g.proxy == discovery.AGENTGATEWAY else "") for g in skipped]
    if found:
        message += (f"; found only proxies that are not Envoy ingress gateways: "
                    f"{', '.join(found)}")
        if not scope.selector and any(g.proxy == discovery.ENVOY for g in skipped):
            message += " (select one with -l to act on it anyway)"
    raise ClusterError(message)


def _rollout_incomplete(cluster: Cluster, gateway: Gateway) -> str | None:
    """A re-run after a stuck rollout must wait for it even when nothing is left to write."""
    from kubectl_keepalive.kube import rollout

    if gateway.deployment is None:
        return None
    # As the Deployment was listed a moment ago; a fake or older caller may not carry it.
    state = gateway.deployment.rollout or cluster.rollout_state(gateway.namespace, gateway.name)
    try:
        progress = rollout.progress(gateway.name, state)
    except rollout.RolloutFailed as exc:
        return str(exc)
    return None if progress.done else progress.message


def _unreadable(gw: GatewayStatus) -> tuple[str, ...]:
    return tuple(f"{p.pod.name}: {p.error}" for p in gw.pods if p.error and p.pod)


def _base_selector(gateway: Gateway, scope: Scope) -> dict[str, str]:
    """The Deployment's selector, whatever -l said: -l only chooses the gateways to act on.
    A filter selecting by -l's labels would carry ones like `istio.io/rev` and stop reaching
    the gateway when they change (a canary upgrade). Without a Deployment, -l's equality labels,
    with offline's refusal of the labels a pod gets from its controller or revision."""
    from kubectl_keepalive.istio import own_selector
    from kubectl_keepalive.kube import labelselector

    if gateway.selector:
        return dict(gateway.selector)
    labels = labelselector.equality_labels(scope.selector) if scope.selector else None
    if not labels:
        raise UsageError(
            f"gateway {gateway.namespace}/{gateway.name} has no Deployment with matchLabels to "
            "select it by: pass -l with key=value labels"
        )
    own_selector.refuse_controller_labels(labels)
    return dict(labels)


def _with_user_selector(gateway: Gateway, scope: Scope,
                        list_pods: Callable[[str, str], list[Pod]],
                        ) -> tuple[Gateway, tuple[str, ...]]:
    """The gateway with the selector its filter gets: the base one, narrowed until it matches
    no other proxy's pods in the gateway's namespace (where the filter lives), or refused;
    and the other gateways the base one matched."""
    from kubectl_keepalive.istio import own_selector

    base = _base_selector(gateway, scope)
    # Listed by the selector itself: pods it matches need not carry the well-known labels.
    pods = list_pods(gateway.namespace, own_selector.selector_text(base))
    narrowed = own_selector.narrow(gateway, base, pods)
    return replace(gateway, selector=narrowed.labels), narrowed.others


def _targets(gw: GatewayStatus, ports: list[int] | None) -> list[envoyfilter.PortTarget]:
    """The TCP listeners to patch: the given ports, or every live TCP gateway port."""
    tcp: dict[int, set[str]] = {}
    udp: set[int] = set()
    for pod in gw.pods:
        for lst in pod.listeners:
            if lst.port is None or lst.static or lst.port in BOOTSTRAP_PORTS:
                continue
            if lst.protocol == "TCP" and lst.state is not ListenerState.REJECTED:
                tcp.setdefault(lst.port, set()).add(lst.name)
            elif lst.protocol != "TCP":
                udp.add(lst.port)
    if ports is None:
        if not tcp:
            readable = [p for p in gw.pods if not p.error]
            why = ("no TCP listener found live" if readable else "no pod's listeners could be "
                   "read (" + "; ".join(_unreadable(gw)) + ")")
            raise ClusterError(
                f"gateway {gw.gateway.namespace}/{gw.gateway.name}: {why}; pass --port"
            )
        ports = sorted(tcp)
    targets = []
    for port in sorted(set(ports)):
        names = tcp.get(port, set())
        # Name the TCP listener only when a UDP (QUIC) listener shares the port, so that the
        # patch never lands on the UDP one; otherwise the port alone is the robust match.
        name = sorted(names)[0] if port in udp and len(names) == 1 else None
        targets.append(envoyfilter.PortTarget(port, name))
    return targets


def _port_changes(
    gw: GatewayStatus, ports: Iterable[int], wanted: KeepaliveSettings | None
) -> tuple[list[PortChange], bool]:
    changes = []
    all_match = True
    after = describe_settings(wanted)
    for port in sorted(set(ports)):
        seen: list[str] = []
        name = None
        for pod in gw.pods:
            active = [
                lst for lst in pod.listeners
                if lst.port == port and lst.protocol == "TCP"
                and lst.state is ListenerState.ACTIVE
            ]
            if pod.error:
                all_match = False
                continue
            if not active:
                seen.append("no listener")
                all_match = False
                continue
            name = active[0].name
            keepalive = sockopts.listener_keepalive(active[0])
            seen.append(describe_keepalive(keepalive))
            ok = keepalive.matches(wanted) if wanted else not keepalive.enabled
            all_match = all_match and ok and not keepalive.duplicated
        before = ", ".join(sorted(set(seen))) or "unknown"
        if before != after:
            changes.append(PortChange(port, name, before, after))
    return changes, all_match


def describe_settings(settings: KeepaliveSettings | None) -> str:
    if settings is None:
        return "off"
    return f"on idle={settings.idle}s interval={settings.interval}s probes={settings.probes}"


def describe_keepalive(keepalive: Any) -> str:
    if not keepalive.enabled:
        return "off"

    def show(value: int | None, unit: str = "s") -> str:
        return "kernel default" if value is None else f"{value}{unit}"

    text = (f"on idle={show(keepalive.idle)} interval={show(keepalive.interval)} "
            f"probes={show(keepalive.probes, '')}")
    return text + " (duplicated options)" if keepalive.duplicated else text
