"""Ending the processes a test started: politely, then for sure, and always reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; the process is waited for either way."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(grace)


def wait_listening(port: int, what: str, process: subprocess.Popen[bytes] | None = None,
                   output: Path | None = None, within: float = 15.0) -> None:
    """Until something accepts on 127.0.0.1:`port`; AssertionError if `process` exits first
    (with the end of its `output`) or nothing listens `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if process is not None and process.poll() is not None:
            said = output.read_text(errors="replace")[-2000:] if output else ""
            raise AssertionError(f"{what} exited {process.returncode} before it listened: "
                                 f"{said}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within "
                                 f"{within:.0f} s")
        time.sleep(0.05)
