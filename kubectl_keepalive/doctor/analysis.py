"""When each timer fires for a described request, which fires first, and what fixes it.

A request is described by a Profile: total duration, the longest silence (no bytes either way;
default = the whole duration) and the upload time (sending the body). The timeline assumed is
the common long request: the body is sent, the server works in silence, then answers; the
response ends at `duration`. Keepalive probes count only for timers that count packets (L4 flow
trackers); Envoy's own timers and L7 balancers count data, so keepalive never resets them.
Pure: records in, records out.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from kubectl_keepalive.durations import format_duration
from kubectl_keepalive.envoy import sockopts
from kubectl_keepalive.errors import EXIT_CHANGES, EXIT_OK, EXIT_UNKNOWN, UsageError
from kubectl_keepalive.model import Keepalive

from .advice import DEFAULT_KEEPALIVE as DEFAULT_KEEPALIVE  # re-exported
from .advice import recommend_keepalive as recommend_keepalive  # re-exported
from .balancers import Balancer, Layer
from .timers import ChainTimers, Counts, PortTimers, RouteTimers, Start, State, Timer

# Kernel defaults when SO_KEEPALIVE is on but a number is not set: one table, in sockopts.
KERNEL_KEEPIDLE = sockopts.KERNEL_DEFAULTS.idle
KERNEL_KEEPINTVL = sockopts.KERNEL_DEFAULTS.interval


# Istio ProxyConfig defaults (mesh.proto): drainDuration 45s, terminationDrainDuration 5s.
ISTIO_DRAIN_DURATION = 45.0
ISTIO_TERMINATION_DRAIN = 5.0


@dataclass(frozen=True)
class Profile:
    """The request the user worries about, in seconds."""

    duration: float
    silence: float | None = None  # longest gap without bytes; None = the whole duration
    upload: float = 0.0  # time to send the request body
    grpc: bool = False

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise UsageError("--duration must be more than 0s")
        if self.silence is not None and not 0 <= self.silence <= self.duration:
            raise UsageError("--silence must be between 0s and --duration")
        if not 0 <= self.upload <= self.duration:
            raise UsageError("--upload must be between 0s and --duration")

    @property
    def quiet(self) -> float:
        return self.duration if self.silence is None else self.silence

    @property
    def silence_start(self) -> float:
        """The silence follows the upload, as far as the duration allows."""
        return max(0.0, min(self.upload, self.duration - self.quiet))

    @property
    def response_start(self) -> float:
        return min(self.duration, self.silence_start + self.quiet)


class Verdict(str, enum.Enum):
    FIRES = "fires"  # cuts the request at fires_at
    HELD = "held"  # would fire, but TCP keepalive probes keep resetting it
    SAFE = "safe"  # armed, but fires only after the request is over
    OFF = "off"  # disabled or unset
    NOT_APPLICABLE = "n/a"  # cannot fire during an active request of this profile
    RISK = "risk"  # cuts in-flight requests during changes (drains)
    UNKNOWN = "unknown"  # value not known


@dataclass(frozen=True)
class Finding:
    timer: Timer
    scope: str  # "balancer", "listener 0.0.0.0_8080", "route ...", "cluster ..."
    verdict: Verdict
    fires_at: float | None  # seconds after the request starts, when it fires
    why: str
    fix: str = ""
    first: bool = False


@dataclass(frozen=True)
class PathReport:
    """One way through the gateway port: a route (HTTP) or a TCP proxy chain."""

    name: str
    match: str
    origin: str | None
    findings: tuple[Finding, ...]

    @property
    def first(self) -> Finding | None:
        return next((f for f in self.findings if f.first), None)


@dataclass(frozen=True)
class Report:
    port: int
    listener: str
    balancer: Balancer
    keepalive: Keepalive
    profile: Profile
    paths: tuple[PathReport, ...]
    notes: tuple[str, ...] = ()
    risks: tuple[Finding, ...] = ()  # drains: they cut in-flight requests during changes

    @property
    def cut(self) -> bool:
        return any(p.first is not None for p in self.paths)

    @property
    def unknown(self) -> bool:
        """Nothing known cuts the request, but the balancer's idle timeout, which may, is not
        known: "nothing cuts" would be a guess."""
        return not self.cut and self.balancer.idle_timeout_s is None

    @property
    def exit_code(self) -> int:
        """1 when something fires before --duration, 6 when that cannot be told, else 0."""
        if self.cut:
            return EXIT_CHANGES
        return EXIT_UNKNOWN if self.unknown else EXIT_OK


def drain_timers(
    listener_drain_s: float | None = ISTIO_DRAIN_DURATION,
    termination_drain_s: float | None = ISTIO_TERMINATION_DRAIN,
    listener_source: str = "Istio ProxyConfig drainDuration default (45s)",
    termination_source: str = "Istio ProxyConfig terminationDrainDuration default (5s)",
) -> tuple[Timer, ...]:
    """Drain risks as timers; the caller passes what the Deployment and proxy config say."""
    out: list[Timer] = []
    if listener_drain_s is not None:
        out.append(Timer("listener drain", "drain", listener_drain_s, State.SET, Counts.DRAIN,
                         listener_source,
                         note="a listener update (enable, disable, a new EnvoyFilter) drains "
                              "the old listener: in-flight requests are closed after this"))
    if termination_drain_s is not None:
        out.append(Timer("termination drain", "drain", termination_drain_s, State.SET,
                         Counts.DRAIN, termination_source,
                         note="a pod being replaced (rollout, node drain) closes its "
                              "requests after this"))
    return tuple(out)


def balancer_timer(balancer: Balancer) -> Timer | None:
    if balancer.idle_timeout_s is None:
        return None
    counts = Counts.PACKETS if balancer.layer is Layer.L4 else Counts.DATA
    if balancer.absolute:
        counts = Counts.ABSOLUTE
    return Timer(f"{balancer.kind} idle timeout" if not balancer.absolute
                 else f"{balancer.kind} timeout", "balancer", float(balancer.idle_timeout_s),
                 State.SET, counts, balancer.source,
                 start=Start.REQUEST_END if balancer.absolute else Start.NONE,
                 until="response-end" if balancer.absolute else "")


def analyze(
    port: PortTimers,
    balancer: Balancer,
    profile: Profile,
    drains: Sequence[Timer] = (),
    keepalive: Keepalive | None = None,
) -> Report:
    """Findings for every route (or TCP chain) of the port, each path ordered by firing time.

    `keepalive` overrides the listener's own (e.g. what `enable` is about to set).
    """
    live = keepalive if keepalive is not None else port.keepalive
    front: list[tuple[Timer, str]] = []
    notes: list[str] = list(balancer.notes)
    timer = balancer_timer(balancer)
    if timer is not None:
        front.append((timer, "balancer"))
    else:
        notes.append(f"balancer {balancer.kind}: idle timeout unknown; it is not in the table")
    risks = tuple(_judge(t, "drain", balancer, live, profile, None) for t in drains)
    slow = _kernel_timers_too_slow(live, timer)
    if slow:
        notes.append(slow)
    paths: list[PathReport] = []
    for chain in port.chains:
        if chain.kind == "tcp":
            paths.append(_tcp_path(chain, front, balancer, live, profile, port.listener))
            continue
        if chain.missing_routes:
            notes.append(f"route config {chain.route_config_name!r} of {chain.name} is not in "
                         "the dump: fetch the full /config_dump")
        for route in chain.routes:
            paths.append(_http_path(chain, route, front, balancer, live, profile, port.listener))
        if not chain.routes:
            # Nothing forwards upstream (direct responses only), but the balancer and the
            # connection manager still time the client's connection: judge those.
            scoped = list(front) + [(t, f"listener {port.listener}") for t in chain.timers]
            findings = [_judge(t, scope, balancer, live, profile, None) for t, scope in scoped]
            paths.append(PathReport(f"{chain.name} (no route forwards upstream)", "any", None,
                                    _order(findings)))
    if not port.chains:
        notes.append(f"listener {port.listener} has no HTTP connection manager or TCP proxy")
    return Report(port.port, port.listener, balancer, live, profile, tuple(paths), tuple(notes),
                  risks)


def _http_path(
    chain: ChainTimers, route: RouteTimers, front: Sequence[tuple[Timer, str]],
    balancer: Balancer, keepalive: Keepalive, profile: Profile, listener: str,
) -> PathReport:
    scoped: list[tuple[Timer, str]] = list(front)
    for t in chain.timers:
        if t.name == "stream_idle_timeout" and route.overrides_stream_idle:
            t = replace(t, note="replaced on this route by the route idle_timeout")
            scoped.append((t, f"listener {listener} (replaced)"))
            continue
        if t.name == "max_stream_duration" and route.overrides_max_stream:
            t = replace(t, note="replaced on this route by the route max_stream_duration")
            scoped.append((t, f"listener {listener} (replaced)"))
            continue
        scoped.append((t, f"listener {listener}"))
    route_scope = f"route {route.route_config}/{route.virtual_host}/{route.name}"
    scoped.extend((t, route_scope) for t in route.timers)
    for cluster in route.clusters:
        scoped.extend((t, f"cluster {cluster.name}") for t in cluster.timers)
    findings = [_judge(t, scope, balancer, keepalive, profile, route.origin)
                for t, scope in scoped]
    return PathReport(route_scope.removeprefix("route "), route.match, route.origin,
                      _order(findings))


def _tcp_path(
    chain: ChainTimers, front: Sequence[tuple[Timer, str]], balancer: Balancer,
    keepalive: Keepalive, profile: Profile, listener: str,
) -> PathReport:
    scoped = list(front) + [(t, f"listener {listener}") for t in chain.timers]
    for cluster in chain.clusters:
        scoped.extend((t, f"cluster {cluster.name}") for t in cluster.timers)
    findings = [_judge(t, scope, balancer, keepalive, profile, None) for t, scope in scoped]
    return PathReport(f"tcp_proxy {chain.name}", "any", None, _order(findings))


# Armed timers first, by when they fire (a safe timer after a cutting one reads in order), then
# the ones that cannot cut this request.
_GROUP = {Verdict.FIRES: 0, Verdict.SAFE: 0, Verdict.HELD: 1, Verdict.RISK: 2,
          Verdict.UNKNOWN: 3, Verdict.NOT_APPLICABLE: 4, Verdict.OFF: 5}


def _order(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    ordered = sorted(findings, key=lambda f: (
        _GROUP[f.verdict], f.fires_at if f.fires_at is not None else math.inf))
    out: list[Finding] = []
    marked = False
    for finding in ordered:
        if finding.verdict is Verdict.FIRES and not marked:
            finding = replace(finding, first=True)
            marked = True
        out.append(finding)
    return tuple(out)


def _s(seconds: float) -> str:
    whole = int(seconds)
    return format_duration(whole) if whole == seconds else f"{seconds:g}s"


def _judge(
    timer: Timer, scope: str, balancer: Balancer, keepalive: Keepalive, profile: Profile,
    origin: str | None,
) -> Finding:
    if timer.counts is Counts.DRAIN:
        if timer.seconds is None:
            return Finding(timer, scope, Verdict.OFF, None, "not armed")
        if timer.layer != "drain":
            # max_connection_duration: Envoy drains the connection and closes it once its active
            # streams finish (http_connection_manager.proto, http1_safe_max_connection_duration).
            return Finding(timer, scope, Verdict.NOT_APPLICABLE, None,
                           "drains the connection; the active request finishes first")
        return Finding(timer, scope, Verdict.RISK, None, timer.note or "drains connections",
                       _fix_drain(timer))
    if not timer.armed or timer.seconds is None:
        return Finding(timer, scope, Verdict.OFF, None,
                       "disabled (0s)" if timer.state is State.DISABLED else "not armed")
    if "(replaced)" in scope:
        return Finding(timer, scope, Verdict.NOT_APPLICABLE, None, timer.note)
    if timer.grpc_only and not profile.grpc:
        return Finding(timer, scope, Verdict.NOT_APPLICABLE, None, "applies to gRPC requests only")
    if timer.counts is Counts.IDLE_CONNECTION:
        return Finding(timer, scope, Verdict.NOT_APPLICABLE, None,
                       "runs only while no request is active")
    if timer.counts is Counts.CONNECT:
        return Finding(timer, scope, Verdict.NOT_APPLICABLE, None,
                       "covers connection setup only")
    value = timer.seconds
    if timer.counts in (Counts.DATA, Counts.PACKETS):
        fires_at = profile.silence_start + value
        if timer.counts is Counts.PACKETS:
            held, how = _held_by_keepalive(keepalive, value)
            if held:
                return Finding(timer, scope, Verdict.HELD, None, how)
        if value <= profile.quiet and fires_at <= profile.duration:
            return Finding(timer, scope, Verdict.FIRES, fires_at,
                           f"{_s(value)} without {_counted(timer)} < {_s(profile.quiet)} "
                           "of silence", _fix(timer, scope, balancer, keepalive, profile, origin))
        return Finding(timer, scope, Verdict.SAFE, fires_at,
                       f"the longest silence ({_s(profile.quiet)}) is shorter")
    # Absolute timers: from the stream start or from the end of the request, up to an end.
    begin = profile.upload if timer.start is Start.REQUEST_END else 0.0
    end = {"request-end": profile.upload, "headers-end": 0.0,
           "response-start": profile.response_start}.get(timer.until, profile.duration)
    fires_at = begin + value
    if timer.until == "headers-end":
        return Finding(timer, scope, Verdict.SAFE, fires_at,
                       "headers arrive at once; this profile does not stall them")
    if fires_at <= end and (timer.until != "request-end" or profile.upload > 0):
        return Finding(timer, scope, Verdict.FIRES, fires_at,
                       f"fires {_s(value)} after {_start_text(timer)}, before {_end_text(timer)}",
                       _fix(timer, scope, balancer, keepalive, profile, origin))
    return Finding(timer, scope, Verdict.SAFE, fires_at,
                   f"{_end_text(timer)} comes first")


def _held_by_keepalive(keepalive: Keepalive, value: float) -> tuple[bool, str]:
    if not keepalive.enabled:
        return False, ""
    idle = keepalive.idle if keepalive.idle is not None else KERNEL_KEEPIDLE
    interval = keepalive.interval if keepalive.interval is not None else KERNEL_KEEPINTVL
    if idle < value and interval < value:
        return True, (f"keepalive probes every {_s(idle)} of silence (retry {_s(interval)}) "
                      f"reset it before {_s(value)}")
    return False, ""


def _kernel_timers_too_slow(keepalive: Keepalive, timer: Timer | None) -> str | None:
    """SO_KEEPALIVE alone (or a partial setting) leaves the kernel's 7200s/75s: say so when that
    is too slow for a packet-counting balancer, since "keepalive: on" reads like safety."""
    if not keepalive.kernel_fields or timer is None or timer.counts is not Counts.PACKETS:
        return None
    effective = keepalive.effective(sockopts.KERNEL_DEFAULTS)
    if effective is None or timer.seconds is None:
        return None
    if effective.idle < timer.seconds and effective.interval < timer.seconds:
        return None
    shown = sockopts.describe_keepalive(keepalive)
    return (f"keepalive is on with the kernel's default timers ({shown}, unless the pod's "
            "sysctls differ): the first probe comes after "
            f"{_s(effective.idle)}, later than the {timer.name} ({_s(timer.seconds)}); set "
            "the timers explicitly (kubectl keepalive enable --idle ...)")


def _counted(timer: Timer) -> str:
    return "a packet" if timer.counts is Counts.PACKETS else "data"


def _start_text(timer: Timer) -> str:
    return "the request was sent" if timer.start is Start.REQUEST_END else "the request started"


def _end_text(timer: Timer) -> str:
    return {"request-end": "the upload ends", "response-start": "the response starts",
            "headers-end": "the headers end"}.get(timer.until, "the response ends")


def _fix(
    timer: Timer, scope: str, balancer: Balancer, keepalive: Keepalive, profile: Profile,
    origin: str | None,
) -> str:
    value = timer.seconds or 0.0
    need = _s(profile.quiet)
    source = f" (from {origin})" if origin else ""
    if timer.layer == "balancer":
        if timer.counts is Counts.PACKETS:
            advice = recommend_keepalive(value)
            s = advice.settings
            text = (f"kubectl keepalive enable --idle {s.idle}s --interval {s.interval} "
                    f"--probes {s.probes}: {advice.reason}")
            if keepalive.enabled:
                text = "keepalive is on but too slow for this balancer: " + text
            if balancer.fix:
                text += f"; or raise the balancer's timer: {balancer.fix}"
            return text
        if timer.counts is Counts.ABSOLUTE:
            return (f"keepalive will not help here: raise {balancer.fix or 'the timeout'} above "
                    f"{_s(profile.duration)}")
        what = f"raise {balancer.fix} above {need}" if balancer.fix else "raise its idle timeout"
        return ("keepalive will not help here: this balancer counts only data; "
                f"{what}, or have the application send bytes more often than every {_s(value)}")
    if timer.layer == "hcm":
        if timer.name == "stream_idle_timeout":
            return ("keepalive will not help here: Envoy counts HTTP events; raise the "
                    f"gateway's stream_idle_timeout above {need} or to 0s (Istio gateways set "
                    "0s: look for an EnvoyFilter or connection settings that changed it)")
        if timer.name == "request_timeout":
            return f"raise the HTTP connection manager request_timeout above the upload " \
                   f"({_s(profile.upload)}) or to 0s"
        return f"raise {timer.name} above {_s(profile.duration)} or unset it"
    if timer.layer == "route":
        if timer.name == "timeout":
            return (f"raise the route timeout above {_s(profile.duration - profile.upload)} or "
                    f"to 0s: VirtualService http[].timeout or HTTPRoute rules[].timeouts.request"
                    f"{source}")
        if timer.name == "per_try_timeout":
            return (f"raise the retry per-try timeout above {need}: VirtualService "
                    f"http[].retries.perTryTimeout{source}")
        if timer.name == "idle_timeout":
            return (f"keepalive will not help here: raise the route idle_timeout above {need} "
                    "or to 0s")
        return f"raise the route {timer.name} above {_s(profile.duration)}{source}"
    if timer.layer == "tcp_proxy" and timer.name == "idle_timeout":
        return ("keepalive will not help here: the TCP proxy counts bytes only; raise "
                f"DestinationRule trafficPolicy.connectionPool.tcp.idleTimeout above {need}")
    return f"raise {timer.layer} {timer.name} above {_s(profile.duration)} or unset it"


def _fix_drain(timer: Timer) -> str:
    field = "drainDuration" if timer.name == "listener drain" else "terminationDrainDuration"
    return ("make changes (enable, disable, rollouts) when no long request is running, or "
            f"raise {field} in the proxy config")
