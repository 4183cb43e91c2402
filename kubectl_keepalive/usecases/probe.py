"""Use case: `probe` holds real connections idle through the real path and reports what
survived.

Targets come from `--url` (no cluster at all) or from the cluster: the ingress gateways `doctor`
looks at, reached at their LoadBalancer Services' `status.loadBalancer.ingress` addresses on the
Service ports that lead to a listener. From the cluster it also takes what decides the hold:
the balancer's idle timeout (the default hold is a margin past it) and the gateway's own
downstream timers for the listener, which a hold may not reach, so that a cut by the gateway is
never blamed on the balancer. The socket work is `kubectl_keepalive.probe`; this returns data.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubectl_keepalive import durations
from kubectl_keepalive.doctor import balancers, timers
from kubectl_keepalive.errors import (
    EXIT_CLUSTER,
    EXIT_OK,
    EXIT_VERIFY,
    ClusterError,
    KeepaliveError,
    UsageError,
)
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.probe import proxyenv, session, targets
from kubectl_keepalive.usecases import app
from kubectl_keepalive.usecases.fronts import FrontPort, front_ports

MARGIN_MIN_S = 5  # the default hold runs this far past the balancer's idle timeout, or 10 %
FULL_DUMP_PATH = "config_dump"
TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_CONTEXT_TYPE = "DownstreamTlsContext"


@dataclass(frozen=True)
class Request:
    """The checked flags of one `probe`."""

    url: str | None
    host: str | None
    hold: tuple[int, int] | None  # --hold A[..B]; None: from the balancer
    connections: int
    answer_timeout: float
    connect_timeout: float
    insecure: bool
    gateway: str | None = None  # --gateway: only the gateway (Deployment) of this name


@dataclass(frozen=True)
class Planned:
    """One target with its hold times, the proxy it goes through, and what decided them."""

    target: targets.Target
    holds: tuple[float, ...]
    proxy: proxyenv.Proxy | None
    hold_source: str  # "--hold", or the balancer's idle timeout it came from


@dataclass(frozen=True)
class Report:
    results: tuple[session.Result, ...]
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if any(r.cut for r in self.results):
            return EXIT_VERIFY
        if any(r.outcome == session.UNREACHABLE for r in self.results):
            return EXIT_CLUSTER
        return EXIT_OK


def default_hold(idle_timeout_s: int) -> int:
    """A margin past the balancer's idle timeout: long enough that the balancer has forgotten
    an unrefreshed flow for certain."""
    return idle_timeout_s + max(MARGIN_MIN_S, idle_timeout_s // 10)


def idle_limit(port: timers.PortTimers) -> timers.Timer | None:
    """The gateway's shortest armed timer that ends an idle connection between requests on
    this listener: the HTTP connection manager's `idle_timeout` and `max_connection_duration`,
    or a TCP proxy's `idle_timeout` and `max_downstream_connection_duration` (passthrough)."""
    names = {"http": ("idle_timeout", "max_connection_duration"),
             "tcp": ("idle_timeout", "max_downstream_connection_duration")}
    armed = [t for chain in port.chains for t in chain.timers
             if t.name in names.get(chain.kind, ()) and t.armed]
    return min(armed, key=lambda t: t.seconds or 0.0, default=None)


def check_hold(holds: Sequence[float], port: timers.PortTimers) -> None:
    """Refuse a hold the gateway's own timer would end, naming the timer."""
    limit = idle_limit(port)
    longest = max(holds)
    if limit is None or limit.seconds is None or longest < limit.seconds:
        return
    raise UsageError(
        f"--hold {durations.format_duration(int(longest))} reaches the gateway's own "
        f"{limit.layer} {limit.name} ({durations.format_duration(int(limit.seconds))}) on port "
        f"{port.port}: {limit.path}; a cut there would be the gateway's, not the balancer's: "
        f"hold less than {durations.format_duration(int(limit.seconds))}")


def _holds(request: Request, idle_timeout_s: int | None, what: str) -> tuple[
        tuple[float, ...], str]:
    if request.hold is not None:
        low, high = request.hold
        return tuple(targets.spread(low, high, request.connections)), "--hold"
    if idle_timeout_s is None:
        raise UsageError(f"--hold is required: the idle timeout of the balancer in front of "
                         f"{what} is not known (declare it with the {balancers.DECLARED_KIND} "
                         f"and {balancers.DECLARED_IDLE} annotations, or give --hold)")
    hold = default_hold(idle_timeout_s)
    return (tuple(targets.spread(hold, hold, request.connections)),
            f"the balancer's idle timeout {idle_timeout_s}s + "
            f"{hold - idle_timeout_s}s")


def plan_url(request: Request, env: Mapping[str, str]) -> tuple[list[Planned], list[str]]:
    """`--url`: one target, no cluster; --hold is required (no balancer is known). The
    gateway's own timers are not read, so a hold that Envoy's default idle timeout would end
    is named in a note."""
    assert request.url is not None
    target = targets.from_url(request.url, request.host)
    holds, source = _holds(request, None, target.label)
    notes = []
    if max(holds) >= timers.HTTP_IDLE_DEFAULT:
        notes.append(f"--url reads no gateway config: if the target is an Envoy gateway, its "
                     f"connection manager's idle_timeout (Envoy's and Istio's default "
                     f"{durations.format_duration(int(timers.HTTP_IDLE_DEFAULT))}) ends a "
                     "connection held this long, not the balancer")
    return [Planned(target, holds, proxyenv.choose(target.scheme, target.host, env),
                    source)], notes


def listener_tls(dump: Mapping[str, Any], port: int) -> bool:
    """Whether the gateway's listener on `port` speaks TLS to clients: every filter chain has a
    TLS transport socket or matches on the TLS transport protocol (passthrough)."""
    for config in dump.get("configs") or ():
        if not isinstance(config, dict):
            continue
        listeners = [((item or {}).get("active_state") or {}).get("listener") or {}
                     for item in config.get("dynamic_listeners") or ()]
        listeners += [(item or {}).get("listener") or {}
                      for item in config.get("static_listeners") or ()]
        for listener in listeners:
            address = (listener.get("address") or {}).get("socket_address") or {}
            if str(address.get("port_value")) != str(port):
                continue
            chains = [c for c in listener.get("filter_chains") or () if isinstance(c, dict)]
            return bool(chains) and all(_chain_tls(c) for c in chains)
    return False


def _chain_tls(chain: Mapping[str, Any]) -> bool:
    socket_config = chain.get("transport_socket") or {}
    typed = str((socket_config.get("typed_config") or {}).get("@type", ""))
    match = chain.get("filter_chain_match") or {}
    return (socket_config.get("name") == TLS_SOCKET or typed.endswith(TLS_CONTEXT_TYPE)
            or match.get("transport_protocol") == "tls")


def ingress_addresses(service: Mapping[str, Any]) -> list[str]:
    """`status.loadBalancer.ingress[].ip|hostname` of a LoadBalancer Service."""
    ingress = (((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
    found = []
    for entry in ingress:
        if isinstance(entry, dict):
            value = entry.get("ip") or entry.get("hostname")
            # Only what can be a host: the value goes into a connect and a Host header.
            if isinstance(value, str) and value and len(value) <= 253 \
                    and set(value) <= targets.HOST_CHARACTERS:
                found.append(value)
    return found


def plan_cluster(cluster: Cluster, scope: app.Scope, request: Request,
                 env: Mapping[str, str]) -> tuple[list[Planned], list[str]]:
    """Targets from the gateways: each LoadBalancer address on each Service port that leads
    to a listener, with its hold (checked against the gateway's own idle timers)."""
    from kubectl_keepalive.usecases import diagnose

    gateways = diagnose.acted_on(cluster, scope)
    if request.gateway is not None:
        named = [g for g in gateways if g.name == request.gateway]
        if not named:
            found = ", ".join(sorted(f"{g.namespace}/{g.name}" for g in gateways))
            raise ClusterError(f"no gateway named {request.gateway} among those found "
                               f"({found})")
        gateways = named
    namespaces = sorted({g.namespace for g in gateways})
    services = [s for ns in namespaces for s in cluster.list_services(ns)]
    provider_ids = cluster.node_provider_ids()
    by_name = {(str((s.get("metadata") or {}).get("namespace")),
                str((s.get("metadata") or {}).get("name"))): s for s in services}
    planned: list[Planned] = []
    notes: list[str] = []
    for gateway in gateways:
        fronts = front_ports(gateway, services, provider_ids)
        reachable = [f for f in fronts
                     if ingress_addresses(by_name.get((gateway.namespace, f.service or ""), {}))]
        if not reachable:
            notes.append(f"gateway {gateway.namespace}/{gateway.name}: no LoadBalancer Service "
                         "with an external address (status.loadBalancer.ingress) in front; "
                         "probe it with --url")
            continue
        dump = _dump(cluster, gateway, scope)
        for front in reachable:
            planned += _plan_front(gateway.namespace, gateway.name, front, dump, by_name,
                                   request, env, notes)
    return planned, notes


def _plan_front(namespace: str, gateway: str, front: FrontPort, dump: dict[str, Any],
                by_name: Mapping[tuple[str, str], Mapping[str, Any]], request: Request,
                env: Mapping[str, str], notes: list[str]) -> list[Planned]:
    if front.target_port not in timers.ports(dump):
        notes.append(f"gateway {namespace}/{gateway}: Service {front.service} port "
                     f"{front.port} targets {front.target_port}, where the gateway has no "
                     "listener")
        return []
    what = f"Service {namespace}/{front.service} port {front.port}"
    holds, source = _holds(request, front.balancer.idle_timeout_s, what)
    check_hold(holds, timers.read_port(dump, front.target_port))
    scheme = "https" if listener_tls(dump, front.target_port) else "http"
    out = []
    for address in ingress_addresses(by_name[(namespace, front.service or "")]):
        target = targets.for_address(scheme, address, int(front.port or front.target_port),
                                     request.host, f"{namespace}/{front.service}:{front.port}",
                                     front.target_port)
        out.append(Planned(target, holds, proxyenv.choose(scheme, address, env), source))
    return out


def _dump(cluster: Cluster, gateway: Any, scope: app.Scope) -> dict[str, Any]:
    problems: list[str] = []
    for pod in gateway.pods:
        if pod.phase != "Running":
            continue
        try:
            return timers.load(cluster.read_admin(pod, FULL_DUMP_PATH, scope.pod_timeout).body)
        except KeepaliveError as exc:
            problems.append(f"pod {pod.namespace}/{pod.name}: {exc}")
    why = "; ".join(problems) or "no running pod"
    raise ClusterError(f"gateway {gateway.namespace}/{gateway.name}: no pod's config could be "
                       f"read, so its idle timers are unknown ({why})")


@dataclass
class Running:
    """Probes under way, one thread each; `progress` is read by whoever shows it."""

    planned: list[tuple[Planned, float]]
    progress: list[session.Progress]
    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)
    results: dict[int, session.Result] = field(default_factory=dict)

    failures: list[BaseException] = field(default_factory=list)

    def wait(self, timeout: float) -> bool:
        """True once every probe has finished (waits at most `timeout` seconds)."""
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            alive[0].join(timeout)
        return not any(t.is_alive() for t in self.threads)

    def report(self, notes: Sequence[str] = ()) -> Report:
        if self.failures:  # a bug in a probe thread: raised here, where the CLI maps it
            raise self.failures[0]
        return Report(tuple(self.results[i] for i in sorted(self.results)), tuple(notes))


def start(planned: Sequence[Planned], request: Request) -> Running:
    """Start every probe at once: N connections with spread holds bracket when the cut comes."""
    settings = session.Settings(request.connect_timeout, request.answer_timeout,
                                request.insecure, request.host is not None)
    pairs = [(p, hold) for p in planned for hold in p.holds]
    running = Running(pairs, [session.Progress(hold) for _, hold in pairs], threading.Event())
    for number, (plan, hold) in enumerate(pairs):
        def work(number: int = number, plan: Planned = plan, hold: float = hold) -> None:
            try:
                running.results[number] = session.run(plan.target, hold, plan.proxy, settings,
                                                       running.progress[number], running.stop)
            except Exception as exc:  # handed to the main thread by report()
                running.failures.append(exc)

        thread = threading.Thread(target=work, name=f"probe-{number}", daemon=True)
        running.threads.append(thread)
        thread.start()
    return running
