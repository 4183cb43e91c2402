"""`status`'s default table: one row per gateway, detail lines only where something is off.

A gateway row says what its pods agree on (ready pods, ports, keepalive, sync); a line under it
names each pod or listener that disagrees or went wrong: a pod not read, a listener warming or
rejected, keepalive values that differ between pods. `-o wide` (render.status_table) keeps one
row per pod and listener. Every name and message from the cluster goes through `terminal.safe`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kubectl_keepalive.envoy import sockopts
from kubectl_keepalive.model import Listener, ListenerState
from kubectl_keepalive.terminal import CUT, safe
from kubectl_keepalive.usecases import app

WIDTH = 100  # a detail line is cut to fit; the whole message is on stderr as a note
HEADER = ["NAMESPACE", "GATEWAY", "ROLE", "PODS", "PORTS", "KEEPALIVE", "SYNC"]
# Established connections with keepalive timers / all of them (-o wide: CONNS(KA/ALL)).
SOCKETS_HEADER = "KA/ALL"
PORTS_CUT = 40  # a gateway with many ports: the first ones, then a count
NAMES_SHOWN = 3  # pods named in one merged detail line
VERDICT_INLINE = 36  # keepalive per port in the cell up to this; longer: a line per port


@dataclass
class GatewayRow:
    """One gateway as the table shows it: its cells, and the lines under it."""

    cells: list[str]
    details: list[str] = field(default_factory=list)
    pods: int = 0
    not_read: int = 0
    without_keepalive: int = 0


def _cell(lst: Listener) -> str:
    keepalive = sockopts.listener_keepalive(lst)
    text = sockopts.describe_keepalive(keepalive)
    if lst.additional_addresses:
        text += f" +{len(lst.additional_addresses)} addr"
    return text + " DUP" if keepalive.duplicated else text


def _patchable(lst: Listener) -> bool:
    """A listener whose keepalive the plugin reports: dynamic, TCP, with a port."""
    return not lst.static and lst.protocol == "TCP" and lst.port is not None


def _pod_name(pod: app.PodListeners) -> str:
    return safe(pod.pod.name) if pod.pod else "-"


def _ports_cell(ports: set[tuple[int, str]]) -> str:
    shown = [str(port) if proto == "TCP" else f"{port}/{proto}" for port, proto in sorted(ports)]
    text = ",".join(shown)
    if len(text) <= PORTS_CUT:
        return text or "-"
    kept: list[str] = []
    for item in shown:
        if len(",".join([*kept, item])) > PORTS_CUT - 10:
            break
        kept.append(item)
    return f"{','.join(kept)},+{len(shown) - len(kept)} more"


def _merged(by_message: dict[str, list[str]]) -> list[str]:
    """`pod a, pod b: message` once per message, in the order first seen."""
    lines = []
    for message, all_names in by_message.items():
        names = [n for n in all_names if n != "-"]  # a config file has no pod name
        if not names:
            lines.append(message)
            continue
        shown = ", ".join(names[:NAMES_SHOWN])
        if len(names) > NAMES_SHOWN:
            shown += f" and {len(names) - NAMES_SHOWN} more"
        word = "pod" if len(names) == 1 else "pods"
        lines.append(f"{word} {shown}: {message}")
    return lines


def gateway_row(gw: app.GatewayStatus, with_sockets: bool) -> GatewayRow:
    """The row and detail lines of one gateway."""
    details: dict[str, list[str]] = {}
    ports: set[tuple[int, str]] = set()
    by_port: dict[int, dict[str, str]] = {}  # port -> pod name -> keepalive cell (active)
    sync: Counter[str] = Counter()
    ready = 0
    not_read = 0
    without = 0
    conns = [0, 0, 0]  # keepalive, established, before change
    for pod in gw.pods:
        name = _pod_name(pod)
        if pod.error:
            not_read += 1
            details.setdefault("not read: " + _first_line(pod.error), []).append(name)
            continue
        if pod.note:
            details.setdefault(_first_line(pod.note), []).append(name)
            continue
        if pod.pod is None or (pod.pod.ready and not pod.pod.terminating):
            ready += 1
        if pod.sockets_error:
            details.setdefault("sockets not read: " + _first_line(pod.sockets_error),
                               []).append(name)
        pod_without = False
        for lst in pod.listeners:
            if lst.static or lst.port is None:
                continue
            ports.add((lst.port, lst.protocol))
            if lst.protocol != "TCP":
                continue
            wanted = gw.managed_settings.get(lst.port)
            state = app.sync_state(lst, wanted)
            if state:
                sync[state] += 1
            if lst.state in (ListenerState.WARMING, ListenerState.REJECTED):
                why = f": {_first_line(lst.error)}" if lst.error else ""
                details.setdefault(f"listener {safe(lst.name)} (port {lst.port}) "
                                   f"{lst.state.value}{why}", []).append(name)
            if lst.state is not ListenerState.ACTIVE:
                continue
            cell = _cell(lst)
            by_port.setdefault(lst.port, {})[name] = cell
            pod_without = pod_without or not sockopts.listener_keepalive(lst).enabled
            seen = pod.connections.get(lst.port) if pod.connections is not None else None
            if seen is not None:
                conns[0] += seen.keepalive
                conns[1] += seen.established
                if sockopts.listener_keepalive(lst).enabled:
                    conns[2] += seen.without_keepalive
        without += pod_without
    verdict = _verdict(by_port, details)
    total = len(gw.pods)
    cells = [safe(gw.gateway.namespace or "-"), safe(gw.gateway.name or "-"),
             gw.gateway.role if gw.gateway.name else "-", f"{ready}/{total}",
             _ports_cell(ports), verdict, _sync_cell(sync)]
    if with_sockets:
        counted = any(p.connections is not None for p in gw.pods)
        cell = f"{conns[0]}/{conns[1]}" if counted else "-"
        if conns[2]:
            cell += f" ({conns[2]} before change)"
        cells.append(cell)
    return GatewayRow(cells, _merged(details), pods=total, not_read=not_read,
                      without_keepalive=without)


def _first_line(text: str) -> str:
    return safe(text.strip().splitlines()[0] if text.strip() else text, CUT)


def _verdict(by_port: dict[int, dict[str, str]], details: dict[str, list[str]]) -> str:
    """What the pods agree on per port: one value when every port has the same, else per port.
    A pod that differs from the rest of its gateway on a port gets a detail line."""
    if not by_port:
        return "-"
    common: dict[int, str] = {}
    for port in sorted(by_port):
        counts = Counter(by_port[port].values())
        value, _ = counts.most_common(1)[0]
        common[port] = value
        if len(counts) > 1:
            for pod, cell in by_port[port].items():
                if cell != value:
                    details.setdefault(f"port {port} {cell} (others: {value})",
                                       []).append(pod)
    # What most pods show; the pods that differ have their lines right under the row.
    values = set(common.values())
    if len(values) == 1:
        return values.pop()
    inline = ", ".join(f"{port}: {value}" for port, value in common.items())
    if len(inline) <= VERDICT_INLINE:
        return inline
    # Too long for one cell: a line per port under the row.
    for port, value in common.items():
        details.setdefault(f"port {port}: {value}", [])
    return "differs by port"


def _sync_cell(sync: Counter[str]) -> str:
    """The worst sync state of the gateway's listeners, with how many are in it."""
    total = sum(sync.values())
    for state in ("rejected", "pending", "applied"):
        if sync[state] == total and total:
            return state
        if sync[state]:
            return f"{state} {sync[state]}/{total}"
    return "-"


def table(report: app.StatusReport, all_namespaces: bool, no_headers: bool = False) -> str:
    """The default `status` table; with -A a summary line after it."""
    with_sockets = any(p.connections is not None or p.sockets_error
                       for g in report.gateways for p in g.pods)
    header = HEADER + ([SOCKETS_HEADER] if with_sockets else [])
    rows = [gateway_row(gw, with_sockets) for gw in report.gateways]
    grid = ([] if no_headers else [header]) + [row.cells for row in rows]
    widths = [max((len(r[i]) for r in grid), default=0) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "   ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    lines = [] if no_headers else [line(header)]
    for row in rows:
        lines.append(line(row.cells))
        lines.extend(_fit("  " + detail) for detail in row.details)
    if all_namespaces and not no_headers:
        lines.append(summary(rows))
    return "\n".join(lines) + "\n"


def summary(rows: list[GatewayRow]) -> str:
    pods = sum(r.pods for r in rows)
    without = sum(r.without_keepalive for r in rows)
    not_read = sum(r.not_read for r in rows)
    return (f"{_count(len(rows), 'gateway')}, {_count(pods, 'pod')}: {without} without "
            f"keepalive, {not_read} not read")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _fit(text: str) -> str:
    """A detail line cut to the table's width (its whole message is a note on stderr)."""
    return text if len(text) <= WIDTH else text[: WIDTH - 3] + "..."
