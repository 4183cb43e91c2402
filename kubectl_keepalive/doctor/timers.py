"""Read every timer that can cut a request out of a full Envoy config dump, for one gateway port.

Input is the admin `/config_dump` (listeners, routes and clusters; `?include_eds` not needed), in
Envoy's snake_case or protojson camelCase. In a raw dump an absent field means Envoy's default and
`"0s"` means disabled; each default below cites the proto comment it comes from. Routes may be
inline (`route_config`) or from RDS, looked up by `route_config_name` in the RoutesConfigDump
(Istio names them like `http.8080`). Pure: parsed JSON in, frozen records out.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.envoy import envoy_dump, sockopts
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import Keepalive

# Envoy defaults for absent fields (api/envoy/... protos, Envoy 1.40).
# http_connection_manager.proto, stream_idle_timeout: "If not specified, this defaults to
# 5 minutes".
HCM_STREAM_IDLE_DEFAULT = 300.0
# config/core/v3/protocol.proto, HttpProtocolOptions.idle_timeout: "If not specified, this
# defaults to 1 hour" (the same message serves the HCM and upstream clusters).
HTTP_IDLE_DEFAULT = 3600.0
# config/route/v3/route_components.proto, RouteAction.timeout: "If not specified, the default is
# 15s ... A value of 0 will disable the route's timeout."
ROUTE_TIMEOUT_DEFAULT = 15.0
# config/cluster/v3/cluster.proto, connect_timeout: "If not set, a default value of 5s will be
# used".
CONNECT_TIMEOUT_DEFAULT = 5.0
# extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto, idle_timeout: "If not set, the default
# idle timeout is 1 hour. If set to 0s, the timeout will be disabled."
TCP_PROXY_IDLE_DEFAULT = 3600.0

HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY_TYPE = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
UPSTREAM_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class Counts(str, enum.Enum):
    """What resets (or starts) a timer: decides whether TCP keepalive can help."""

    DATA = "data"  # reset only by application bytes / HTTP events; keepalive probes do not count
    PACKETS = "packets"  # reset by any packet, TCP keepalive probes included (L4 flow trackers)
    ABSOLUTE = "absolute"  # runs from a fixed point whatever the traffic
    IDLE_CONNECTION = "idle-connection"  # runs only while no request is active: cannot cut one
    CONNECT = "connect"  # only while a connection is being set up
    DRAIN = "drain"  # not a steady-state timer: cuts in-flight requests during changes


class State(str, enum.Enum):
    SET = "set"  # the config gives a value
    DEFAULT = "default"  # absent: Envoy's (or the provider's) documented default applies
    DISABLED = "disabled"  # explicitly 0s
    UNSET = "unset"  # absent and without a default: not armed


# Where a timer starts counting, for timers that do not count idleness.
class Start(str, enum.Enum):
    STREAM = "stream"  # when the request starts
    REQUEST_END = "request-end"  # when the whole request (body included) has been received
    NONE = "none"


@dataclass(frozen=True)
class Timer:
    """One timer on the path, with its effective value.

    `seconds` is None when the timer is disabled or unset. `path` says where the value was read
    (or which documented default applies), so the user can find and change it.
    """

    name: str
    layer: str  # balancer, listener, hcm, route, cluster, tcp_proxy, drain
    seconds: float | None
    state: State
    counts: Counts
    path: str
    start: Start = Start.NONE
    until: str = ""  # for ABSOLUTE timers: "response-end", "response-start" or "request-end"
    grpc_only: bool = False
    note: str = ""

    @property
    def armed(self) -> bool:
        return self.seconds is not None and self.seconds > 0


@dataclass(frozen=True)
class UpstreamKeepalive:
    """Cluster `upstream_connection_options.tcp_keepalive`; None fields mean the kernel default."""

    probes: int | None
    time: int | None
    interval: int | None


@dataclass(frozen=True)
class ClusterTimers:
    name: str
    found: bool  # False when the route names a cluster the dump does not have
    timers: tuple[Timer, ...] = ()
    tcp_keepalive: UpstreamKeepalive | None = None


@dataclass(frozen=True)
class RouteTimers:
    """One route of one virtual host, with the route- and vhost-level timers merged."""

    route_config: str
    virtual_host: str
    name: str
    match: str
    origin: str | None  # the Istio resource that produced it, when the metadata says so
    timers: tuple[Timer, ...]
    clusters: tuple[ClusterTimers, ...]
    num_retries: int | None = None  # None: no retry policy on the route or its virtual host
    # Route idle_timeout replaces the HCM stream_idle_timeout once headers are in (proto comment).
    overrides_stream_idle: bool = False
    # Route max_stream_duration replaces the HCM's (RouteAction.MaxStreamDuration).
    overrides_max_stream: bool = False


@dataclass(frozen=True)
class ChainTimers:
    """One filter chain of the listener: an HTTP connection manager or a TCP proxy."""

    name: str
    kind: str  # "http" or "tcp"
    timers: tuple[Timer, ...]
    routes: tuple[RouteTimers, ...] = ()
    clusters: tuple[ClusterTimers, ...] = ()  # tcp_proxy targets
    route_config_name: str | None = None
    missing_routes: bool = False  # RDS name not in the dump


@dataclass(frozen=True)
class PortTimers:
    port: int
    listener: str
    keepalive: Keepalive
    chains: tuple[ChainTimers, ...]


# ---------------------------------------------------------------------------------------------
# Loading


_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def _snake(key: str) -> str:
    # Only plain camelCase identifiers; map keys like extension names keep their dots and case.
    if not _CAMEL.match(key) or key.islower():
        return key
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {_snake(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def load(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """A config dump as a snake_case dict; bad JSON or a non-dump is a UsageError."""
    if isinstance(raw, Mapping):
        document: Any = dict(raw)
    else:
        try:
            document = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except RecursionError:
            raise UsageError("not a JSON config dump: nested too deeply") from None
        except ValueError as exc:  # bad JSON, not UTF-8, integers past Python's limit
            raise UsageError(f"not a JSON config dump: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("configs"), list):
        raise UsageError("not a full Envoy /config_dump: no `configs` list")
    try:
        normalised: dict[str, Any] = _normalise(document)
    except RecursionError:
        raise UsageError("not a JSON config dump: nested too deeply") from None
    return normalised


def parse_duration(value: Any) -> float | None:
    """Proto JSON Duration ("3600s", "0.250s") to seconds; None when absent or malformed."""
    if isinstance(value, dict):  # some tools print {"seconds": "5", "nanos": 0}
        return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return float(value[:-1])
    except ValueError:
        return None


def _timer(
    name: str,
    layer: str,
    raw: Any,
    path: str,
    counts: Counts,
    *,
    default: float | None = None,
    default_doc: str = "",
    start: Start = Start.NONE,
    until: str = "",
    grpc_only: bool = False,
    note: str = "",
) -> Timer:
    """A timer from a raw field: absent -> default (or unset), 0 -> disabled."""
    seconds = parse_duration(raw)
    if seconds is None:
        if default is None:
            return Timer(name, layer, None, State.UNSET, counts, f"{path} (absent: not armed)",
                         start, until, grpc_only, note)
        return Timer(name, layer, default, State.DEFAULT, counts,
                     f"{path} (absent: Envoy default, {default_doc})", start, until, grpc_only,
                     note)
    if seconds == 0:
        return Timer(name, layer, None, State.DISABLED, counts, f"{path} = 0s (disabled)", start,
                     until, grpc_only, note)
    return Timer(name, layer, seconds, State.SET, counts, path, start, until, grpc_only, note)


# ---------------------------------------------------------------------------------------------
# Index of the dump


@dataclass(frozen=True)
class _Index:
    listeners: tuple[tuple[dict[str, Any], str], ...]  # (listener, where)
    routes: Mapping[str, tuple[dict[str, Any], str]]
    clusters: Mapping[str, tuple[dict[str, Any], str]]


def _configs(dump: Mapping[str, Any], suffix: str) -> Iterator[dict[str, Any]]:
    for config in dump.get("configs") or ():
        if isinstance(config, dict) and str(config.get("@type", "")).endswith(suffix):
            yield config


def _index(dump: Mapping[str, Any]) -> _Index:
    listeners: list[tuple[dict[str, Any], str]] = []
    for config in _configs(dump, "ListenersConfigDump"):
        for item in config.get("static_listeners") or ():
            body = item.get("listener") if isinstance(item, dict) else None
            if isinstance(body, dict):
                listeners.append((body, f"static_listeners[{body.get('name', '')}]"))
        for item in config.get("dynamic_listeners") or ():
            active = (item.get("active_state") or {}) if isinstance(item, dict) else {}
            body = active.get("listener")
            if isinstance(body, dict):
                listeners.append((body, f"dynamic_listeners[{body.get('name', '')}]"))
    routes: dict[str, tuple[dict[str, Any], str]] = {}
    for config in _configs(dump, "RoutesConfigDump"):
        for key in ("static_route_configs", "dynamic_route_configs"):
            for item in config.get(key) or ():
                body = item.get("route_config") if isinstance(item, dict) else None
                if isinstance(body, dict):
                    name = str(body.get("name", ""))
                    routes[name] = (body, f"{key}[{name}]")
    clusters: dict[str, tuple[dict[str, Any], str]] = {}
    for config in _configs(dump, "ClustersConfigDump"):
        for key in ("static_clusters", "dynamic_active_clusters"):
            for item in config.get(key) or ():
                body = item.get("cluster") if isinstance(item, dict) else None
                if isinstance(body, dict):
                    name = str(body.get("name", ""))
                    clusters[name] = (body, f"{key}[{name}]")
    return _Index(tuple(listeners), routes, clusters)


def _port_of(listener: Mapping[str, Any]) -> tuple[int | None, str]:
    address = (listener.get("address") or {}).get("socket_address") or {}
    try:
        port: int | None = int(address["port_value"])
    except (KeyError, TypeError, ValueError):
        port = None
    return port, str(address.get("protocol") or "TCP").upper()


def ports(raw: bytes | str | Mapping[str, Any]) -> list[int]:
    """TCP ports with an active listener in the dump, sorted."""
    index = _index(load(raw))
    found = {p for body, _ in index.listeners for p, proto in [_port_of(body)]
             if p is not None and proto == "TCP"}
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# Reading


def read_port(raw: bytes | str | Mapping[str, Any], port: int) -> PortTimers:
    """Timers for the TCP listener Envoy binds on `port` (the Service targetPort)."""
    dump = load(raw)
    index = _index(dump)
    for listener, where in index.listeners:
        listener_port, protocol = _port_of(listener)
        if listener_port == port and protocol == "TCP":
            return _read_listener(listener, where, index, port)
    raise UsageError(f"no active TCP listener on port {port} in the config dump")


def _read_listener(
    listener: dict[str, Any], where: str, index: _Index, port: int
) -> PortTimers:
    # The one keepalive reader (envoy_dump + sockopts), as status and enable use it.
    keepalive = sockopts.listener_keepalive(envoy_dump.listener(listener, where))
    chains_raw = list(listener.get("filter_chains") or ())
    if isinstance(listener.get("default_filter_chain"), dict):
        chains_raw.append(listener["default_filter_chain"])
    chains: list[ChainTimers] = []
    for number, chain in enumerate(chains_raw):
        if not isinstance(chain, dict):
            continue
        chain_name = str(chain.get("name") or f"filter_chains[{number}]")
        for filt in chain.get("filters") or ():
            if not isinstance(filt, dict):
                continue
            config = filt.get("typed_config") or {}
            kind = str(config.get("@type", ""))
            path = f"{where}.{chain_name}.{filt.get('name', '')}"
            if kind.endswith(HCM_TYPE):
                chains.append(_read_hcm(config, path, chain_name, index))
            elif kind.endswith(TCP_PROXY_TYPE):
                chains.append(_read_tcp_proxy(config, path, chain_name, index))
    return PortTimers(port=port, listener=str(listener.get("name", "")),
                      keepalive=keepalive, chains=tuple(chains))


def _read_hcm(
    hcm: dict[str, Any], path: str, chain_name: str, index: _Index
) -> ChainTimers:
    common = hcm.get("common_http_protocol_options") or {}
    doc_hcm = "http_connection_manager.proto"
    timers = (
        _timer("stream_idle_timeout", "hcm", hcm.get("stream_idle_timeout"),
               f"{path}.stream_idle_timeout", Counts.DATA, default=HCM_STREAM_IDLE_DEFAULT,
               default_doc=f"5m per {doc_hcm}",
               note="reset by each HTTP event of the stream (headers or data, either way)"),
        _timer("request_timeout", "hcm", hcm.get("request_timeout"),
               f"{path}.request_timeout", Counts.ABSOLUTE, start=Start.STREAM,
               until="request-end", note="until the whole request has been received"),
        _timer("request_headers_timeout", "hcm", hcm.get("request_headers_timeout"),
               f"{path}.request_headers_timeout", Counts.ABSOLUTE, start=Start.STREAM,
               until="headers-end", note="until the request headers have been received"),
        _timer("max_stream_duration", "hcm", common.get("max_stream_duration"),
               f"{path}.common_http_protocol_options.max_stream_duration", Counts.ABSOLUTE,
               start=Start.STREAM, until="response-end"),
        _timer("idle_timeout", "hcm", common.get("idle_timeout"),
               f"{path}.common_http_protocol_options.idle_timeout", Counts.IDLE_CONNECTION,
               default=HTTP_IDLE_DEFAULT, default_doc="1h per protocol.proto",
               note="runs only while the connection has no active request"),
        _timer("max_connection_duration", "hcm", common.get("max_connection_duration"),
               f"{path}.common_http_protocol_options.max_connection_duration", Counts.DRAIN,
               note="drains the connection; an active request may finish"),
    )
    route_config: dict[str, Any] | None = None
    route_where = ""
    rds_name: str | None = None
    missing = False
    if isinstance(hcm.get("route_config"), dict):
        route_config = hcm["route_config"]
        route_where = f"{path}.route_config"
    elif isinstance(hcm.get("rds"), dict):
        rds_name = str(hcm["rds"].get("route_config_name") or "")
        found = index.routes.get(rds_name)
        if found:
            route_config, route_where = found
        else:
            missing = True
    routes = _read_routes(route_config, route_where, index) if route_config else ()
    return ChainTimers(name=chain_name, kind="http", timers=timers, routes=routes,
                       route_config_name=rds_name or (route_config or {}).get("name"),
                       missing_routes=missing)


def _read_tcp_proxy(
    proxy: dict[str, Any], path: str, chain_name: str, index: _Index
) -> ChainTimers:
    timers = (
        _timer("idle_timeout", "tcp_proxy", proxy.get("idle_timeout"), f"{path}.idle_timeout",
               Counts.DATA, default=TCP_PROXY_IDLE_DEFAULT, default_doc="1h per tcp_proxy.proto",
               note="bytes in either direction only; keepalive probes do not reset it"),
        _timer("max_downstream_connection_duration", "tcp_proxy",
               proxy.get("max_downstream_connection_duration"),
               f"{path}.max_downstream_connection_duration", Counts.ABSOLUTE, start=Start.STREAM,
               until="response-end"),
    )
    names: list[str] = []
    if proxy.get("cluster"):
        names.append(str(proxy["cluster"]))
    for weighted in ((proxy.get("weighted_clusters") or {}).get("clusters") or ()):
        if isinstance(weighted, dict) and weighted.get("name"):
            names.append(str(weighted["name"]))
    return ChainTimers(name=chain_name, kind="tcp", timers=timers,
                       clusters=tuple(_read_cluster(n, index) for n in names))


def _read_routes(
    route_config: dict[str, Any], where: str, index: _Index
) -> tuple[RouteTimers, ...]:
    out: list[RouteTimers] = []
    config_name = str(route_config.get("name", ""))
    for vhost in route_config.get("virtual_hosts") or ():
        if not isinstance(vhost, dict):
            continue
        vh_name = str(vhost.get("name", ""))
        for number, route in enumerate(vhost.get("routes") or ()):
            if not isinstance(route, dict) or not isinstance(route.get("route"), dict):
                continue  # redirects and direct responses have no upstream timers
            route_name = str(route.get("name") or f"routes[{number}]")
            path = f"{where}.virtual_hosts[{vh_name}].routes[{route_name}].route"
            out.append(_read_route(route, vhost, path, config_name, vh_name, route_name, index))
    return tuple(out)


def _read_route(
    route: dict[str, Any],
    vhost: dict[str, Any],
    path: str,
    config_name: str,
    vh_name: str,
    route_name: str,
    index: _Index,
) -> RouteTimers:
    action: dict[str, Any] = route["route"]
    timers = [
        _timer("timeout", "route", action.get("timeout"), f"{path}.timeout", Counts.ABSOLUTE,
               default=ROUTE_TIMEOUT_DEFAULT, default_doc="15s per route_components.proto",
               start=Start.REQUEST_END, until="response-end",
               note="from the end of the request to the end of the response, retries included"),
    ]
    idle_raw = action.get("idle_timeout")
    if idle_raw is not None:
        timers.append(_timer("idle_timeout", "route", idle_raw, f"{path}.idle_timeout",
                             Counts.DATA, note="replaces the HCM stream_idle_timeout"))
    # A route's retry_policy wins over its virtual host's as a whole (route_components.proto).
    retry = action.get("retry_policy")
    retry_path = f"{path}.retry_policy"
    if not isinstance(retry, dict) and isinstance(vhost.get("retry_policy"), dict):
        retry = vhost["retry_policy"]
        retry_path = path.rsplit(".routes[", 1)[0] + ".retry_policy"
    count: int | None = None
    if isinstance(retry, dict):
        retries = retry.get("num_retries")
        count = int(retries) if retries is not None else 1  # RetryPolicy: "defaults to 1"
        timers.append(_timer(
            "per_try_timeout", "route", retry.get("per_try_timeout"),
            f"{retry_path}.per_try_timeout", Counts.ABSOLUTE, start=Start.REQUEST_END,
            until="response-start",
            note=f"retry_on {retry.get('retry_on', '')!r}, num_retries {count}; "
                 "an unset per_try_timeout uses the route timeout"))
    max_stream = action.get("max_stream_duration")
    if isinstance(max_stream, dict):
        if max_stream.get("max_stream_duration") is not None:
            timers.append(_timer("max_stream_duration", "route",
                                 max_stream.get("max_stream_duration"),
                                 f"{path}.max_stream_duration.max_stream_duration",
                                 Counts.ABSOLUTE, start=Start.STREAM, until="response-end",
                                 note="replaces the HCM max_stream_duration"))
        if max_stream.get("grpc_timeout_header_max") is not None:
            timers.append(_timer("grpc_timeout_header_max", "route",
                                 max_stream.get("grpc_timeout_header_max"),
                                 f"{path}.max_stream_duration.grpc_timeout_header_max",
                                 Counts.ABSOLUTE, start=Start.REQUEST_END,
                                 until="response-end", grpc_only=True))
    if action.get("max_grpc_timeout") is not None:  # deprecated form of the above
        timers.append(_timer("max_grpc_timeout", "route", action.get("max_grpc_timeout"),
                             f"{path}.max_grpc_timeout", Counts.ABSOLUTE,
                             start=Start.REQUEST_END, until="response-end", grpc_only=True,
                             note="caps the client's grpc-timeout header (gRPC only)"))
    names: list[str] = []
    if action.get("cluster"):
        names.append(str(action["cluster"]))
    for weighted in ((action.get("weighted_clusters") or {}).get("clusters") or ()):
        if isinstance(weighted, dict) and weighted.get("name"):
            names.append(str(weighted["name"]))
    metadata = ((route.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
    origin = metadata.get("config") if isinstance(metadata, dict) else None
    return RouteTimers(
        route_config=config_name, virtual_host=vh_name, name=route_name,
        match=_match_text(route.get("match") or {}), origin=str(origin) if origin else None,
        timers=tuple(timers), clusters=tuple(_read_cluster(n, index) for n in names),
        num_retries=count,
        overrides_stream_idle=idle_raw is not None,
        overrides_max_stream=isinstance(max_stream, dict)
        and max_stream.get("max_stream_duration") is not None,
    )


def _match_text(match: Mapping[str, Any]) -> str:
    for key in ("prefix", "path", "path_separated_prefix"):
        if key in match:
            return f"{key} {match[key]}"
    if isinstance(match.get("safe_regex"), dict):
        return f"regex {match['safe_regex'].get('regex', '')}"
    return "any"


def _read_cluster(name: str, index: _Index) -> ClusterTimers:
    found = index.clusters.get(name)
    if not found:
        return ClusterTimers(name=name, found=False)
    cluster, where = found
    path = where
    options: Mapping[str, Any] = {}
    options_path = f"{path}.common_http_protocol_options"
    typed = (cluster.get("typed_extension_protocol_options") or {}).get(UPSTREAM_HTTP_OPTIONS)
    if isinstance(typed, dict) and isinstance(typed.get("common_http_protocol_options"), dict):
        options = typed["common_http_protocol_options"]
        options_path = (f"{path}.typed_extension_protocol_options[{UPSTREAM_HTTP_OPTIONS}]"
                        ".common_http_protocol_options")
    elif isinstance(cluster.get("common_http_protocol_options"), dict):  # deprecated form
        options = cluster["common_http_protocol_options"]
    timers = (
        _timer("connect_timeout", "cluster", cluster.get("connect_timeout"),
               f"{path}.connect_timeout", Counts.CONNECT, default=CONNECT_TIMEOUT_DEFAULT,
               default_doc="5s per cluster.proto"),
        _timer("idle_timeout", "cluster", options.get("idle_timeout"),
               f"{options_path}.idle_timeout", Counts.IDLE_CONNECTION,
               default=HTTP_IDLE_DEFAULT, default_doc="1h per protocol.proto",
               note="upstream pool connection with no active request"),
        _timer("max_connection_duration", "cluster", options.get("max_connection_duration"),
               f"{options_path}.max_connection_duration", Counts.DRAIN,
               note="drains the upstream connection; an active request may finish"),
        _timer("max_stream_duration", "cluster", options.get("max_stream_duration"),
               f"{options_path}.max_stream_duration", Counts.ABSOLUTE, start=Start.STREAM,
               until="response-end"),
    )
    keepalive: UpstreamKeepalive | None = None
    raw_ka = (cluster.get("upstream_connection_options") or {}).get("tcp_keepalive")
    if isinstance(raw_ka, dict):
        def number(key: str) -> int | None:
            try:
                return int(raw_ka[key])
            except (KeyError, TypeError, ValueError):
                return None

        keepalive = UpstreamKeepalive(number("keepalive_probes"), number("keepalive_time"),
                                      number("keepalive_interval"))
    return ClusterTimers(name=name, found=True, timers=timers, tcp_keepalive=keepalive)
