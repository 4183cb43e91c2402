"""Long waits on a terminal: one line redrawn in place (what is awaited, elapsed of the
timeout), cleared at the end; not on a terminal: plain lines, each once.

The end-to-end cases run `enable` over the fake cluster in a child process whose stderr is a
pty (a terminal) or a pipe, with a fake clock: time.monotonic and time.sleep are replaced before
the plugin is imported, so a rollout of several polls takes no real time.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from kubectl_keepalive.cli.progress import ERASE, Progress

REPO = Path(__file__).resolve().parents[2]

DRIVER = r"""
import io, json, sys, time
now = [1000.0]
time.monotonic = lambda: now[0]
def sleep(seconds):
    now[0] += seconds
time.sleep = sleep
sys.path.insert(0, sys.argv[1])
from kubectl_keepalive.cli.main import main
from tests.unit.fake_cluster import FakeCluster, FakeGateway
gateway = FakeGateway("istio-system", "istio-ingressgateway",
                      {"app": "istio-ingressgateway", "istio": "ingressgateway"}, [8080],
                      replicas=2, rollout_reads_until_done=4)
fake = FakeCluster(gateway)
fake.push_after_reads = 3  # istiod's push seen after a few reads: a wait for it
code = main(["enable", "-y", "--timeout", "5m"], None, None, lambda _: fake,
            {"KUBECONFIG": sys.argv[2]}, io.StringIO(""))
sys.stdout.flush()
sys.stderr.flush()
sys.exit(code)
"""


def _kubeconfig(tmp_path: Path) -> str:
    from tests.unit.test_cli import KUBECONFIG

    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(KUBECONFIG))
    return str(path)


def test_on_a_terminal_the_wait_is_one_line_redrawn_then_cleared(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", DRIVER, str(REPO), _kubeconfig(tmp_path)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        code = child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        os.close(controller)
    assert code == 0, seen
    text = seen.decode()
    redraws = [part for part in text.split(ERASE) if part.strip()]
    waits = [part for part in redraws if part.lower().startswith("waiting for")]
    # Each wait shows what is awaited and the time elapsed of the --timeout, on one line.
    assert any("istiod to push" in w for w in waits), redraws
    assert any("rollout to finish" in w for w in waits), redraws
    assert all(w.rstrip().endswith("of 300s)") and "\n" not in w for w in waits), waits
    elapsed = [int(w.rsplit("(", 1)[1].split("s", 1)[0]) for w in waits]
    assert elapsed == sorted(elapsed) and elapsed[-1] > elapsed[0], elapsed
    # Events print as lines of their own; the status line is erased before them and at the end.
    assert "successfully rolled out\r\n" in text
    assert text.endswith(ERASE) or not text.rstrip("\r\n").split(ERASE)[-1].lower().startswith(
        "waiting for")


def test_without_a_terminal_the_same_waits_are_plain_lines(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", DRIVER, str(REPO), _kubeconfig(tmp_path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    lines = done.stderr.splitlines()
    waits = [line for line in lines if line.lower().startswith("waiting for")]
    assert any("istiod to push" in w for w in waits) and any(
        "rollout to finish" in w for w in waits), lines
    assert len(waits) == len(set(waits)), waits  # each said once, not every poll


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_the_line_is_cut_to_the_terminal_and_escaped() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, 300, clock, terminal=True, tick=0)
    progress.width = 60
    clock.now += 7
    progress.report("waiting for gateway ns/\x1b[31mred to show a very long description")
    drawn = stream.getvalue()
    assert drawn.startswith(ERASE) and "\x1b[31m" not in drawn and "\\x1b[31m" in drawn
    assert len(drawn) - len(ERASE) == 59 and drawn.endswith("(7s of 300s)")
    progress.report("deployment rolled out")
    progress.close()
    assert stream.getvalue().endswith(ERASE + "deployment rolled out\n")
