"""`probe`'s output: the result table, the `-o json|yaml` document, progress lines. Pure:
strings out. Everything a server sent is already escaped by the probe package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubectl_keepalive.probe import session
from kubectl_keepalive.terminal import safe
from kubectl_keepalive.usecases import probe


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 1 or value == 0 else f"{value:.1f}s"


def _probes(result: session.Result) -> str:
    if result.probes_seen is not None:
        return str(result.probes_seen)
    return "-"


def table(report: probe.Report) -> str:
    """One row per held connection: where, how long, what the gateway sent, what happened."""
    header = ("TARGET", "ADDRESS", "PORT", "TLS", "HELD", "PROBES", "RESULT")
    rows = [header]
    for r in report.results:
        held = _seconds(r.held_s) if r.outcome != session.UNREACHABLE else "-"
        # Names from the cluster (Service, ingress hostname) are outside text.
        rows.append((safe(r.target.label), safe(r.target.host), str(r.target.port),
                     "yes" if r.target.tls else "no", held, _probes(r), r.outcome))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"


def details(report: probe.Report) -> list[str]:
    """What the table cannot hold: why each probe ended as it did, and what hid the count."""
    lines = []
    for r in report.results:
        if r.outcome != session.SURVIVED:
            lines.append(f"{safe(r.target.label)} (hold {_seconds(r.hold_s)}): {r.outcome}: "
                         f"{safe(r.detail, 1000)}")
    for note in sorted({(r.probes_note, r.proxy) for r in report.results if r.probes_note},
                       key=str):
        text, proxy = note
        lines.append(text + (f" ({proxy})" if proxy else ""))
    return lines


def document(report: probe.Report) -> dict[str, Any]:
    """The `-o json|yaml` contract (keys may grow, never shrink)."""
    return {
        "results": [{
            "target": r.target.label,
            "address": r.target.host,
            "port": r.target.port,
            "tls": r.target.tls,
            "server_name": r.target.server_name,
            "listener_port": r.target.listener_port,
            "hold_seconds": r.hold_s,
            "held_seconds": r.held_s,
            "outcome": r.outcome,
            "survived": r.outcome == session.SURVIVED,
            "detail": r.detail,
            "probes_seen": r.probes_seen,
            "probes_note": r.probes_note or None,
            "proxy": r.proxy,
            "statuses": list(r.statuses),
        } for r in report.results],
        "notes": list(report.notes),
        "exit_code": report.exit_code,
    }


def progress_line(progress: Sequence[session.Progress], elapsed: float) -> str:
    """`holding 7s/10s, 3 probes seen` for one connection; the furthest and the total for more."""
    holding = [p for p in progress if p.phase in ("holding", "asking")]
    done = sum(1 for p in progress if p.phase == "done")
    if not holding:
        phase = "connecting" if done < len(progress) else "done"
        return f"probe: {phase} ({elapsed:.0f}s)"
    longest = max(p.hold_s for p in progress)
    held = max(p.held_s for p in holding)
    counted = [p.probes for p in holding if p.probes is not None]
    seen = f", {max(counted)} probes seen" if counted else ""
    asking = sum(1 for p in holding if p.phase == "asking")
    more = (f" [{len(holding)} holding, {asking} asking, {done} done of {len(progress)}]"
            if len(progress) > 1 else "")
    verb = "asking again" if asking and len(progress) == 1 else "holding"
    return f"probe: {verb} {_seconds(held)}/{_seconds(longest)}{seen}{more}"


def plan_lines(planned: Sequence[probe.Planned]) -> list[str]:
    """Before the wait: what will be held, for how long, through what."""
    lines = []
    for p in planned:
        holds = ", ".join(_seconds(h) for h in p.holds)
        via = (f" through proxy {p.proxy.shown} (from {p.proxy.source})" if p.proxy else "")
        sni = (f", server name {p.target.server_name}" if p.target.tls and p.target.server_name
               else ", no server name (SNI)" if p.target.tls else "")
        lines.append(f"probing {safe(p.target.label)} at {safe(p.target.address)}{safe(sni)}"
                     f"{via}: silent for {holds} ({p.hold_source})")
    return lines
