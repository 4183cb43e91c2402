"""One probe: connect, a first request, silence for the hold, a second request on the same
connection; what the kernel saw arrive meanwhile. Runs in its own thread beside the others;
`Progress` is what the command line reads while it waits.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass

from kubectl_keepalive.probe import tcpinfo, wire
from kubectl_keepalive.probe.proxyenv import Proxy
from kubectl_keepalive.probe.targets import Target

SURVIVED, RESET, CLOSED, NO_ANSWER, UNREACHABLE = (
    "survived", "reset", "closed", "no answer", "unreachable")
CUT = (RESET, CLOSED, NO_ANSWER)
PROXY_HIDES = "probes not visible: proxy in the path"
CANNOT_TELL = "cannot tell"
SAMPLE_EVERY = 0.25  # seconds between TCP_INFO samples while holding


@dataclass(frozen=True)
class Settings:
    connect_timeout: float
    answer_timeout: float
    insecure: bool
    sni_given: bool


@dataclass(frozen=True)
class Result:
    target: Target
    hold_s: float  # what was asked
    held_s: float  # the silence that really passed (0 when never connected)
    outcome: str  # survived, reset, closed, no answer, unreachable
    detail: str  # escaped, one line
    probes_seen: int | None  # None: see probes_note
    probes_note: str  # "" when counted; PROXY_HIDES or CANNOT_TELL otherwise
    proxy: str | None  # host:port of the proxy in the path
    statuses: tuple[int, ...]  # of the answers that came back

    @property
    def cut(self) -> bool:
        return self.outcome in CUT


class Progress:
    """Shared with the thread that prints progress: plain attributes, written by one thread."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.phase = "connecting"  # connecting, holding, asking, done
        self.held_s = 0.0
        self.probes: int | None = None


def seconds(value: float) -> str:
    """10s, 2.5s: whole seconds shown whole."""
    return f"{value:.0f}s" if abs(value - round(value)) < 0.05 else f"{value:.1f}s"


def tls_context(insecure: bool) -> ssl.SSLContext:
    """The system's trust store (SSL_CERT_FILE / SSL_CERT_DIR honoured), or no check at all."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def run(target: Target, hold_s: float, proxy: Proxy | None, settings: Settings,
        progress: Progress, stop: threading.Event) -> Result:
    proxy_shown = proxy.shown if proxy is not None else None

    def result(outcome: str, detail: str, held: float, counter: tcpinfo.ProbeCounter | None,
               statuses: tuple[int, ...]) -> Result:
        if outcome == UNREACHABLE:
            seen, note = None, ""  # nothing was held: nothing to count
        elif proxy is not None:
            seen, note = None, PROXY_HIDES
        elif counter is None:
            seen, note = None, CANNOT_TELL
        else:
            seen, note = counter.count, ""
        progress.phase = "done"
        return Result(target, hold_s, round(held, 3), outcome, detail, seen, note, proxy_shown,
                      statuses)

    context = tls_context(settings.insecure) if target.tls else None
    try:
        conn = wire.open_connection(target, proxy, context, settings.connect_timeout,
                                    settings.sni_given)
    except wire.Unreachable as exc:
        return result(UNREACHABLE, str(exc), 0.0, None, ())
    try:
        try:
            first = wire.first_request(conn, target, settings.answer_timeout)
        except wire.Unreachable as exc:
            return result(UNREACHABLE, str(exc), 0.0, None, ())
        counter = _hold(conn, hold_s, progress, stop)
        held = progress.held_s
        progress.phase = "asking"
        try:
            second = wire.second_request(conn, target, settings.answer_timeout)
        except wire.Cut as exc:
            return result(exc.kind, f"cut at some point in the {seconds(held)} of silence: {exc}",
                          held, counter, (first.status,))
        except wire.Unreachable as exc:  # an answer came back, but broke the bounds
            return result(SURVIVED, f"answered after {seconds(held)} of silence, but {exc}",
                          held, counter, (first.status,))
        return result(SURVIVED, f"answered {second.status} after {seconds(held)} of silence", held,
                      counter, (first.status, second.status))
    finally:
        conn.close()


def _hold(conn: wire.Connection, hold_s: float, progress: Progress,
          stop: threading.Event) -> tcpinfo.ProbeCounter | None:
    """Stay silent for `hold_s`, sampling the socket's counters."""
    first = tcpinfo.read(conn.raw)
    counter = tcpinfo.ProbeCounter(first) if first is not None else None
    progress.phase = "holding"
    progress.probes = 0 if counter is not None else None
    start = time.monotonic()
    end = start + hold_s
    while True:
        now = time.monotonic()
        progress.held_s = now - start
        if now >= end or stop.is_set():
            break
        stop.wait(min(SAMPLE_EVERY, end - now))
        if counter is not None:
            sample = tcpinfo.read(conn.raw)
            if sample is not None:
                progress.probes = counter.update(sample)
    progress.held_s = time.monotonic() - start
    return counter
