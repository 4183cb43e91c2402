"""The doctor's report as a table (one per path) and as a JSON-able dict for `-o json`.

Pure: strings and plain dicts out. The JSON keys may grow, never shrink. In the table, every
name from the cluster or the config dump (listeners, routes, clusters, Services) and every
sentence built around one is shown through `terminal.safe`: escaped, cut, one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubectl_keepalive.durations import format_duration
from kubectl_keepalive.terminal import safe

from .analysis import Finding, PathReport, Report, Verdict
from .balancers import DECLARED_IDLE, DECLARED_KIND

SENTENCE_CUT = 1000  # a why, fix or note: the analysis's words around names already cut


def _t(text: object) -> str:
    """One name as the table shows it."""
    return safe(str(text))


def _w(text: object) -> str:
    """One sentence as the table shows it."""
    return safe(str(text), SENTENCE_CUT)


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    return format_duration(whole) if whole == seconds else f"{seconds:g}s"


def _keepalive_text(report: Report) -> str:
    ka = report.keepalive
    if not ka.enabled:
        return "off"
    parts = [f"idle {ka.idle}s" if ka.idle is not None else "idle kernel default",
             f"interval {ka.interval}s" if ka.interval is not None else "interval kernel default",
             f"probes {ka.probes}" if ka.probes is not None else "probes kernel default"]
    return ", ".join(parts)


def table(report: Report, show_all: bool = False) -> str:
    """Text report. Without `show_all`, disabled and non-applicable timers are left out."""
    p = report.profile
    b = report.balancer
    lines = [
        f"port {report.port} (listener {_t(report.listener)}); request: {_s(p.duration)}, "
        f"silence {_s(p.quiet)}, upload {_s(p.upload)}",
        f"balancer: {_t(b.kind)} ({b.layer.value}), idle timeout "
        f"{_s(b.idle_timeout_s) if b.idle_timeout_s is not None else 'unknown'}"
        + (f" from {_t(b.source)}" if b.source else "") + f"; detected by {_w(b.detected_by)}",
        f"listener keepalive: {_keepalive_text(report)}",
    ]
    lines.extend(f"note: {_w(n)}" for n in report.notes)
    for risk in report.risks:
        if risk.verdict is Verdict.RISK:
            lines.append(f"risk: {_t(risk.timer.name)} {_s(risk.timer.seconds)} "
                         f"({_t(risk.timer.path)}): {_w(risk.why)}; {_w(risk.fix)}")
    for path in report.paths:
        lines.append("")
        lines.extend(_path_table(path, show_all))
    lines.append("")
    if report.cut:
        lines.append("result: something cuts this request before it ends (exit 1)")
    elif report.unknown:
        lines.append("result: cannot tell: the balancer's idle timeout, which may cut this "
                     "request, is unknown (exit 6)")
        lines.append(f"  declare it on the Service: {DECLARED_KIND}=l4|l7 and "
                     f"{DECLARED_IDLE}=SECONDS")
    else:
        lines.append("result: nothing cuts this request before it ends")
    return "\n".join(lines) + "\n"


def _path_table(path: PathReport, show_all: bool) -> list[str]:
    head = f"{_t(path.name)}  match {_t(path.match)}" + (
        f"  from {_t(path.origin)}" if path.origin else "")
    rows: list[Sequence[str]] = [("", "FIRES AT", "TIMER", "VALUE", "COUNTS", "VERDICT", "SCOPE")]
    hidden = (Verdict.OFF, Verdict.NOT_APPLICABLE)
    for f in path.findings:
        if not show_all and f.verdict in hidden:
            continue
        rows.append(("*" if f.first else "", _s(f.fires_at), _t(f.timer.name), _value(f),
                     f.timer.counts.value, f.verdict.value, _t(f.scope)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [head]
    out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
               for r in rows)
    for f in path.findings:
        if f.verdict is Verdict.FIRES:
            out.append(f"  {_t(f.timer.name)} ({_t(f.scope)}): {_w(f.why)}")
            out.append(f"    source: {_t(f.timer.path)}")
            if f.fix:
                out.append(f"    fix: {_w(f.fix)}")
    return out


def _value(f: Finding) -> str:
    if f.timer.seconds is None:
        return "0s (off)" if f.timer.state.value == "disabled" else "unset"
    return _s(f.timer.seconds) + (" (default)" if f.timer.state.value == "default" else "")


def document(report: Report) -> dict[str, Any]:
    """The `-o json` contract."""
    b = report.balancer
    ka = report.keepalive
    return {
        "port": report.port,
        "listener": report.listener,
        "profile": {"duration": report.profile.duration, "silence": report.profile.quiet,
                    "upload": report.profile.upload, "grpc": report.profile.grpc},
        "balancer": {"kind": b.kind, "layer": b.layer.value,
                     "idle_timeout_seconds": b.idle_timeout_s, "source": b.source or None,
                     "detected_by": b.detected_by, "fix": b.fix or None, "notes": list(b.notes)},
        "keepalive": {"enabled": ka.enabled, "idle": ka.idle, "interval": ka.interval,
                      "probes": ka.probes},
        "paths": [_path(p) for p in report.paths],
        "risks": [_finding(f) for f in report.risks],
        "notes": list(report.notes),
        "cut": report.cut,
        "unknown": report.unknown,
    }


def _path(path: PathReport) -> dict[str, Any]:
    first = path.first
    return {
        "name": path.name,
        "match": path.match,
        "origin": path.origin,
        "first": {"timer": first.timer.name, "scope": first.scope,
                  "fires_at": first.fires_at} if first else None,
        "timers": [_finding(f) for f in path.findings],
    }


def _finding(f: Finding) -> dict[str, Any]:
    t = f.timer
    return {
        "name": t.name,
        "layer": t.layer,
        "scope": f.scope,
        "seconds": t.seconds,
        "state": t.state.value,
        "counts": t.counts.value,
        "source": t.path,
        "verdict": f.verdict.value,
        "fires_at": f.fires_at,
        "first": f.first,
        "why": f.why,
        "fix": f.fix or None,
        "note": t.note or None,
    }
