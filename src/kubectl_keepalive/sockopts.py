"""TCP keepalive as Envoy socket options: the numbers, how to build them, how to read them back.

Linux numbers (Envoy always runs on Linux in a cluster): SOL_SOCKET=1/SO_KEEPALIVE=9,
IPPROTO_TCP=6/TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from kubectl_keepalive.model import Keepalive, KeepaliveSettings, Listener, SocketOption

SOL_SOCKET = 1
SO_KEEPALIVE = 9
IPPROTO_TCP = 6
TCP_KEEPIDLE = 4
TCP_KEEPINTVL = 5
TCP_KEEPCNT = 6

KEEPALIVE_KEYS = frozenset(
    {
        (SOL_SOCKET, SO_KEEPALIVE),
        (IPPROTO_TCP, TCP_KEEPIDLE),
        (IPPROTO_TCP, TCP_KEEPINTVL),
        (IPPROTO_TCP, TCP_KEEPCNT),
    }
)

# PREBIND: set before bind(), the state users report working on every Envoy version.
STATE_PREBIND = "STATE_PREBIND"


def wanted_options(settings: KeepaliveSettings) -> tuple[SocketOption, ...]:
    return (
        SocketOption(SOL_SOCKET, SO_KEEPALIVE, 1),
        SocketOption(IPPROTO_TCP, TCP_KEEPIDLE, settings.idle),
        SocketOption(IPPROTO_TCP, TCP_KEEPINTVL, settings.interval),
        SocketOption(IPPROTO_TCP, TCP_KEEPCNT, settings.probes),
    )


def describe(option: SocketOption) -> str:
    names = {
        (SOL_SOCKET, SO_KEEPALIVE): "SO_KEEPALIVE",
        (IPPROTO_TCP, TCP_KEEPIDLE): "TCP_KEEPIDLE",
        (IPPROTO_TCP, TCP_KEEPINTVL): "TCP_KEEPINTVL",
        (IPPROTO_TCP, TCP_KEEPCNT): "TCP_KEEPCNT",
    }
    return names.get((option.level, option.name), f"level {option.level} name {option.name}")


def to_envoy_json(options: Iterable[SocketOption]) -> list[dict[str, Any]]:
    """Options as an EnvoyFilter patch value carries them (snake_case, Envoy proto JSON)."""
    out: list[dict[str, Any]] = []
    for option in options:
        item: dict[str, Any] = {"description": describe(option)}
        item.update({"level": option.level, "name": option.name, "int_value": option.int_value})
        item["state"] = option.state
        out.append(item)
    return out


def keepalive_of(options: Iterable[SocketOption]) -> Keepalive:
    """What a socket gets from these options. Later options win, as setsockopt calls do."""
    relevant = [o for o in options if (o.level, o.name) in KEEPALIVE_KEYS]
    counts = Counter((o.level, o.name) for o in relevant)
    last = {(o.level, o.name): o.int_value for o in relevant}
    enabled = bool(last.get((SOL_SOCKET, SO_KEEPALIVE)))
    if not enabled:
        return Keepalive(enabled=False, duplicated=any(c > 1 for c in counts.values()))
    return Keepalive(
        enabled=True,
        idle=last.get((IPPROTO_TCP, TCP_KEEPIDLE)),
        interval=last.get((IPPROTO_TCP, TCP_KEEPINTVL)),
        probes=last.get((IPPROTO_TCP, TCP_KEEPCNT)),
        duplicated=any(c > 1 for c in counts.values()),
    )


def listener_keepalive(listener: Listener) -> Keepalive:
    """What a listener's accepted TCP sockets get: the one reader every command uses."""
    return keepalive_of(listener.options)
