"""TCP keepalive as Envoy socket options: the numbers, how to build them, how to read them back.

Linux numbers (Envoy always runs on Linux in a cluster): SOL_SOCKET=1/SO_KEEPALIVE=9,
IPPROTO_TCP=6/TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from kubectl_keepalive.model import (
    AdditionalAddress,
    Keepalive,
    KeepaliveSettings,
    Listener,
    SocketOption,
    TcpKeepalive,
)

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

# The kernel's timers when SO_KEEPALIVE is on and a number is not set: net.ipv4.tcp_keepalive_time,
# _intvl and _probes (Documentation/networking/ip-sysctl.rst). Per network namespace, so per pod.
KERNEL_DEFAULTS = KeepaliveSettings(idle=7200, interval=75, probes=9)

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


def keepalive_of(
    options: Iterable[SocketOption], tcp_keepalive: TcpKeepalive | None = None
) -> Keepalive:
    """What a TCP socket gets from a `tcp_keepalive` message and these socket options.

    Measured with Envoy 1.40 (tests/envoy): the `tcp_keepalive` options are set first and the
    `socket_options` after them, in order, so a later option wins over an earlier one and over
    `tcp_keepalive` (SO_KEEPALIVE=0 turns it off again). Datagram-only options never reach a
    TCP socket. A present `tcp_keepalive` sets SO_KEEPALIVE; its unset numbers stay the kernel's.
    """
    last: dict[tuple[int, int], int | None] = {}
    sources: list[str] = []
    if tcp_keepalive is not None:
        sources.append("tcp_keepalive")
        last[(SOL_SOCKET, SO_KEEPALIVE)] = 1
        for key, value in (((IPPROTO_TCP, TCP_KEEPIDLE), tcp_keepalive.time),
                           ((IPPROTO_TCP, TCP_KEEPINTVL), tcp_keepalive.interval),
                           ((IPPROTO_TCP, TCP_KEEPCNT), tcp_keepalive.probes)):
            if value is not None:
                last[key] = value
    relevant = [o for o in options
                if (o.level, o.name) in KEEPALIVE_KEYS and o.socket_type != "datagram"]
    if relevant:
        sources.append("socket_options")
    counts = Counter((o.level, o.name) for o in relevant)
    last.update({(o.level, o.name): o.int_value for o in relevant})
    duplicated = any(c > 1 for c in counts.values())
    if not last.get((SOL_SOCKET, SO_KEEPALIVE)):
        return Keepalive(enabled=False, duplicated=duplicated, sources=tuple(sources))
    return Keepalive(
        enabled=True,
        idle=last.get((IPPROTO_TCP, TCP_KEEPIDLE)),
        interval=last.get((IPPROTO_TCP, TCP_KEEPINTVL)),
        probes=last.get((IPPROTO_TCP, TCP_KEEPCNT)),
        duplicated=duplicated,
        sources=tuple(sources),
    )


def listener_keepalive(listener: Listener) -> Keepalive:
    """What a listener's accepted TCP sockets get on its main address: the one reader every
    command uses. UDP, pipe and internal listeners have no TCP sockets: always off."""
    if listener.protocol != "TCP":
        return Keepalive(enabled=False)
    return keepalive_of(listener.options, listener.tcp_keepalive)


def address_keepalive(listener: Listener, address: AdditionalAddress) -> Keepalive:
    """An additional address: its own `socket_options`/`tcp_keepalive` override the
    listener's (an empty `socket_options` override means no options at all)."""
    if listener.protocol != "TCP":
        return Keepalive(enabled=False)
    options = listener.options if address.options is None else address.options
    tcp = listener.tcp_keepalive if address.tcp_keepalive is None else address.tcp_keepalive
    return keepalive_of(options, tcp)


def describe_keepalive(keepalive: Keepalive, kernel: KeepaliveSettings = KERNEL_DEFAULTS) -> str:
    """`off`, `on 60s/10s/x3`, or with the kernel's timers filled in and said to be so."""
    effective = keepalive.effective(kernel)
    if effective is None:
        return "off"
    text = f"on {effective.idle}s/{effective.interval}s/x{effective.probes}"
    from_kernel = keepalive.kernel_fields
    if len(from_kernel) == 3:
        return text + " (kernel defaults)"
    if from_kernel:
        return text + f" (kernel default {', '.join(from_kernel)})"
    return text


def listener_notes(listener: Listener) -> list[str]:
    """What a person should know about a listener's keepalive beyond its numbers."""
    notes: list[str] = []
    tcp_options = [o for o in listener.options if (o.level, o.name) in KEEPALIVE_KEYS
                   and o.socket_type != "datagram"]
    if listener.protocol == "UDP":
        # Stream-typed options skip UDP sockets; the others reach them, TCP level included.
        on_udp = [o for o in listener.options
                  if o.level == IPPROTO_TCP and o.socket_type != "stream"]
        if listener.tcp_keepalive is not None or on_udp:
            notes.append("TCP keepalive options on a UDP listener: they do not apply to UDP "
                         "sockets and Envoy rejects TCP-level ones; patch only TCP listeners")
        return notes
    if listener.protocol != "TCP":
        if listener.tcp_keepalive is not None or tcp_options:
            notes.append(f"keepalive options on a {listener.protocol.lower()} listener have no "
                         "TCP socket to act on")
        return notes
    keepalive = listener_keepalive(listener)
    if listener.tcp_keepalive is not None and tcp_options:
        notes.append("both tcp_keepalive and keepalive socket_options are set: Envoy applies "
                     "socket_options last, so they win")
    if any(o.socket_type == "datagram" and (o.level, o.name) in KEEPALIVE_KEYS
           for o in listener.options):
        notes.append("keepalive socket options typed `datagram` do not apply to TCP sockets")
    if keepalive.kernel_fields:
        notes.append(f"keepalive {describe_keepalive(keepalive)}: the kernel's "
                     f"net.ipv4.tcp_keepalive_* sysctls apply ({KERNEL_DEFAULTS.idle}s/"
                     f"{KERNEL_DEFAULTS.interval}s/x{KERNEL_DEFAULTS.probes} unless the pod's "
                     "sysctls differ)")
    for extra in listener.additional_addresses:
        other = address_keepalive(listener, extra)
        if describe_keepalive(other) != describe_keepalive(keepalive):
            notes.append(f"additional address {extra.address}:{extra.port}: keepalive "
                         f"{describe_keepalive(other)}")
    return notes
