"""Faults done to the lab's own processes, shared by the cluster tier's fault tests and the soak.

Every fault goes through the lab's controls and is undone by its caller (in a `finally`): the
API server frozen with SIGSTOP and thawed with SIGCONT, istiod killed and started again by
lab/cluster-up.sh, a pod deleted through the API server. Nothing here assumes which test runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cluster.conftest import Lab, labctl

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def cluster_dir() -> Path:
    name = os.environ.get("KEEPALIVE_CLUSTER_NAME", "keepalive-lab")
    return labctl.cache_dir() / "kwok" / "clusters" / name


def component_pid(name: str) -> int:
    return int((cluster_dir() / "pids" / f"{name}.pid").read_text().strip())


def istiod_pid_file(revision: str) -> Path:
    return labctl.run_dir() / f"istiod-{revision}.pid"


def alive(pid: int, binary: str) -> bool:
    try:
        return binary in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (subprocess.SubprocessError, OSError, ValueError):
            pass  # the API server or a process still coming back
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def control_plane_up(lab: Lab) -> bool:
    """Every component's recorded process runs and the API server answers."""
    if not all(alive(component_pid(c), c) for c in COMPONENTS):
        return False
    return lab.kubectl("get", "--raw", "/readyz", check=False).returncode == 0


def cluster_up(lab: Lab) -> None:
    """`make cluster-up` on the running lab: restarts whatever died (istiod here)."""
    subprocess.run(["bash", str(labctl.LAB_DIR / "cluster-up.sh")], env=lab.env(), check=True,
                   capture_output=True, timeout=300)


def start_lab_processes(lab: Lab) -> None:
    """lab/start-processes.sh: the lab's processes that are not running (istiod after a kill)
    start again, and nothing else is touched (cluster-up.sh would also seed the gateways again,
    which undoes a scale)."""
    subprocess.run(["bash", str(labctl.LAB_DIR / "start-processes.sh")], env=lab.env(),
                   check=True, capture_output=True, timeout=300)


def istiod_up(revision: str) -> bool:
    pid_file = istiod_pid_file(revision)
    try:
        return alive(int(pid_file.read_text()), "pilot-discovery")
    except (OSError, ValueError):
        return False


@contextmanager
def frozen(pid: int) -> Iterator[Callable[[], None]]:
    """The process stopped (SIGSTOP) for the block, and always continued (SIGCONT) after it;
    the block gets `thaw`, to continue it earlier (again is harmless)."""

    def thaw() -> None:
        os.kill(pid, signal.SIGCONT)

    os.kill(pid, signal.SIGSTOP)
    try:
        yield thaw
    finally:
        thaw()


def run_enable(lab: Lab, args: list[str], marker: str,
               fault: Callable[[], None]) -> subprocess.CompletedProcess[str]:
    """`kubectl keepalive ARGS`; `fault` runs (in its own thread) when `marker` first shows on
    stderr, so the fault lands in the wait that prints it."""
    err: list[str] = []
    out: list[str] = []
    faults: list[threading.Thread] = []
    with subprocess.Popen(["kubectl", "keepalive", *args], env=lab.env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL) as proc:
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None
        reader = threading.Thread(target=lambda: out.append(stdout.read()))
        reader.start()
        for line in stderr:
            err.append(line)
            if marker in line and not faults:
                faults.append(threading.Thread(target=fault))
                faults[0].start()
        code = proc.wait(timeout=300)
        reader.join()
    for thread in faults:
        thread.join()
    assert faults, f"the fault never ran: {marker!r} not in\n{''.join(err)}"
    return subprocess.CompletedProcess(args, code, "".join(out), "".join(err))


def keepalive_options(lab: Lab, namespace: str, pod: str, ports: tuple[int, ...] | None = None,
                      ) -> dict[int, list[tuple[int, int, int]]]:
    """Per port (those given, else every one), the (level, name, int_value) socket options of
    the pod's active TCP listener, read from its Envoy's admin directly (not through the
    plugin: it is what is checked)."""
    import json
    import urllib.request

    address = lab.pod_address(namespace, pod)
    with urllib.request.urlopen(f"http://{address}:15000/config_dump?resource="
                                "dynamic_listeners", timeout=10) as reply:
        dump = json.loads(reply.read(16 * 1024 * 1024))
    found: dict[int, list[tuple[int, int, int]]] = {}
    for entry in dump.get("configs", []):
        listener = (entry.get("active_state") or {}).get("listener") or {}
        port = ((listener.get("address") or {}).get("socket_address") or {}).get("port_value")
        protocol = ((listener.get("address") or {}).get("socket_address") or {}).get(
            "protocol", "TCP")
        if port is not None and (ports is None or port in ports) and protocol == "TCP":
            found[int(port)] = [(int(o.get("level", 0)), int(o.get("name", 0)),
                                 int(o.get("int_value", 0)))
                                for o in listener.get("socket_options", [])]
    return found


def wanted_options(idle: int, interval: int, probes: int) -> list[tuple[int, int, int]]:
    """SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT as Linux numbers them."""
    return [(1, 9, 1), (6, 4, idle), (6, 5, interval), (6, 6, probes)]
