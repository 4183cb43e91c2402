"""Progress of a long wait (istiod's push, a rollout, `--when-quiet`), as a person sees it.

On a terminal the current wait is one line redrawn in place, with what is awaited and the time
elapsed of the timeout (`waiting for ...  (12s of 300s)`), kept up to date by a ticker between
the use case's reports and cleared when the wait ends; every other line is printed above it. Not
on a terminal, each line is printed once when it says something new, as `kubectl rollout status`
does. Text from the use cases is shown through `terminal.safe`; only this module's own cursor
control (`\\r`, erase line) reaches the terminal raw.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import IO

from kubectl_keepalive.terminal import LINE_CUT, safe

ERASE = "\r\x1b[K"  # back to the line's start, erase it
TICK = 0.5  # seconds between redraws on a terminal
DEFAULT_WIDTH = 100


def is_wait(line: str) -> bool:
    """A line that says what is awaited (the use cases start them so), not an event."""
    return line.lower().startswith("waiting for ")


def on_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def _width(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (AttributeError, OSError, ValueError):
        return DEFAULT_WIDTH


class Progress:
    """`report` for a use case's waits; `close()` (or the `with` block's end) clears the line."""

    def __init__(self, stream: IO[str], timeout: float,
                 clock: Callable[[], float] = time.monotonic, terminal: bool | None = None,
                 tick: float = TICK) -> None:
        self.stream = stream
        self.timeout = timeout
        self.clock = clock
        self.start = clock()
        self.terminal = on_terminal(stream) if terminal is None else terminal
        self.width = _width(stream) if self.terminal else DEFAULT_WIDTH
        self.current: str | None = None  # the wait on the redrawn line
        self.last_plain: str | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None
        self.tick = tick

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def report(self, line: str) -> None:
        with self.lock:
            if self.terminal and is_wait(line):
                self.current = line
                self._draw()
                self._start_ticker()
                return
            self._erase()
            self.current = None
            if line == self.last_plain:
                return  # a line again only once it says something new
            self.last_plain = line
            self.stream.write(safe(line, LINE_CUT) + "\n")
            self.stream.flush()

    def status(self) -> str:
        """The redrawn line: what is awaited, elapsed of the timeout, cut to the terminal."""
        elapsed = max(0.0, self.clock() - self.start)
        tail = f"  ({elapsed:.0f}s of {self.timeout:.0f}s)"
        room = max(10, self.width - 1 - len(tail))
        text = safe(self.current or "", LINE_CUT)
        if len(text) > room:
            text = text[: room - 3] + "..."
        return text + tail

    def close(self) -> None:
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join(timeout=2 * self.tick + 1)
        with self.lock:
            self._erase()
            self.current = None

    def _draw(self) -> None:
        self.stream.write(ERASE + self.status())
        self.stream.flush()

    def _erase(self) -> None:
        if self.current is not None:
            self.stream.write(ERASE)
            self.stream.flush()

    def _start_ticker(self) -> None:
        if self.ticker is not None or self.tick <= 0:
            return

        def run() -> None:
            while not self.stopped.wait(self.tick):
                with self.lock:
                    if self.current is not None:
                        self._draw()

        self.ticker = threading.Thread(target=run, name="progress", daemon=True)
        self.ticker.start()
