"""What is in flight on a gateway Envoy's listeners, from its admin stats.

Envoy counts open downstream connections per listener (`listener.<address>_<port>.
downstream_cx_active`) and requests in flight per HTTP connection manager (`http.<stat_prefix>.
downstream_rq_active`); the stat prefix is named in the listener's filter chains, so the
config dump maps it to a port. A TLS passthrough (tcp_proxy) connection has no request count:
the connection is the unit in flight, so it counts as one.

Pure: a config dump and a stats text (or `format=json`) in, counts per port out.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# The gauges we need and nothing else: stats of a big gateway run to megabytes.
STATS_FILTER = (r"^(listener\..+\.downstream_cx_active"
                r"|http\..+\.downstream_(cx|rq)_active)$")
STATS_PATH = "stats?filter=" + urllib.parse.quote(STATS_FILTER, safe="")
HCM_SUFFIX = "HttpConnectionManager"
TCP_PROXY_SUFFIX = "TcpProxy"


@dataclass(frozen=True)
class Prefixes:
    """The stat prefixes of one port's TCP listener: HTTP connection managers, tcp_proxies."""

    http: tuple[str, ...] = ()
    tcp: tuple[str, ...] = ()


@dataclass(frozen=True)
class PortLoad:
    port: int
    connections: int  # open downstream connections on the listener
    requests: int  # HTTP requests in flight
    tcp_connections: int  # passthrough (tcp_proxy) connections

    @property
    def in_flight(self) -> int:
        """What a listener drain or a pod's end would cut."""
        return self.requests + self.tcp_connections

    def __add__(self, other: PortLoad) -> PortLoad:
        return PortLoad(self.port, self.connections + other.connections,
                        self.requests + other.requests,
                        self.tcp_connections + other.tcp_connections)


def _get(obj: dict[str, Any], snake: str, camel: str) -> Any:
    return obj.get(snake, obj.get(camel))


def _active_listeners(dump: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for config in dump.get("configs") or []:
        if not isinstance(config, dict):
            continue
        # `?resource=dynamic_listeners` lists the DynamicListener entries themselves.
        entries = _get(config, "dynamic_listeners", "dynamicListeners") or (
            [config] if _get(config, "active_state", "activeState") else [])
        for entry in entries:
            state = _get(entry, "active_state", "activeState") or {}
            listener = state.get("listener")
            if isinstance(listener, dict):
                yield listener
        for entry in _get(config, "static_listeners", "staticListeners") or []:
            if isinstance(entry.get("listener"), dict):
                yield entry["listener"]


def _filters(listener: dict[str, Any]) -> Iterator[dict[str, Any]]:
    chains = list(_get(listener, "filter_chains", "filterChains") or [])
    default = _get(listener, "default_filter_chain", "defaultFilterChain")
    if isinstance(default, dict):
        chains.append(default)
    for chain in chains:
        for item in (chain.get("filters") or []) if isinstance(chain, dict) else []:
            if isinstance(item, dict):
                yield _get(item, "typed_config", "typedConfig") or {}


def _port(listener: dict[str, Any]) -> tuple[int | None, bool]:
    """(port, is TCP) of a listener's address."""
    address = (listener.get("address") or {})
    socket = _get(address, "socket_address", "socketAddress") or {}
    port = _get(socket, "port_value", "portValue")
    return (int(port) if isinstance(port, (int, str)) and str(port).isdigit() else None,
            str(socket.get("protocol", "TCP")).upper() != "UDP")


def listener_prefixes(raw: bytes | str | dict[str, Any]) -> dict[int, Prefixes]:
    """Per TCP port, the stat prefixes its active listener's filter chains name."""
    dump = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    found: dict[int, tuple[list[str], list[str]]] = {}
    for listener in _active_listeners(dump if isinstance(dump, dict) else {}):
        port, tcp = _port(listener)
        if port is None or not tcp:
            continue
        http, proxies = found.setdefault(port, ([], []))
        for config in _filters(listener):
            kind = str(config.get("@type", ""))
            prefix = _get(config, "stat_prefix", "statPrefix")
            if not isinstance(prefix, str):
                continue
            if kind.endswith(HCM_SUFFIX) and prefix not in http:
                http.append(prefix)
            elif kind.endswith(TCP_PROXY_SUFFIX) and prefix not in proxies:
                proxies.append(prefix)
    return {port: Prefixes(tuple(h), tuple(t)) for port, (h, t) in found.items()}


def parse_stats(raw: bytes | str) -> dict[str, int]:
    """Integer stats from `/stats` text (`name: value` lines) or `/stats?format=json`."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    if text.lstrip().startswith("{"):
        document = json.loads(text)
        return {str(s["name"]): int(s["value"]) for s in document.get("stats") or []
                if isinstance(s, dict) and isinstance(s.get("value"), int)}
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().isdigit():
            found[name.strip()] = int(value)
    return found


def _listener_port(stat: str) -> int | None:
    """The port in `listener.<address>_<port>.downstream_cx_active`; None for the admin
    listener, per-worker copies and UDP listeners."""
    middle = stat[len("listener."):-len(".downstream_cx_active")]
    if middle.startswith("udp_") or ".worker_" in middle:
        return None
    _, _, port = middle.rpartition("_")
    return int(port) if port.isdigit() else None


def load_by_port(stats: dict[str, int], prefixes: dict[int, Prefixes],
                 ports: Iterable[int]) -> dict[int, PortLoad]:
    """Per port asked for: connections, HTTP requests and passthrough connections in flight."""
    connections: dict[int, int] = {}
    for name, value in stats.items():
        if name.startswith("listener.") and name.endswith(".downstream_cx_active"):
            port = _listener_port(name)
            if port is not None:
                connections[port] = connections.get(port, 0) + value
    out = {}
    for port in sorted(set(ports)):
        found = prefixes.get(port, Prefixes())
        requests = sum(stats.get(f"http.{p}.downstream_rq_active", 0) for p in found.http)
        http_cx = sum(stats.get(f"http.{p}.downstream_cx_active", 0) for p in found.http)
        total = connections.get(port, 0)
        # Connections not held by an HTTP manager on a port with tcp_proxy chains are
        # passthrough streams; without a known prefix, count every connection (the safe side).
        tcp = max(0, total - http_cx) if found.tcp or not found.http else 0
        out[port] = PortLoad(port, total, requests, tcp)
    return out
