"""Fleet: `kubectl keepalive status` over 1, 10 and 100 gateway pods of the lab cluster.

Side by side in one run with what users script today: a sequential loop of `kubectl port-forward`
plus an HTTP GET of `config_dump` per pod, and `istioctl proxy-config listener POD -o json` per
pod (istioctl built from the lab's pinned Istio). Every pod has its own Envoy, configured by the
lab's istiod. Reports wall time, peak RSS and API requests (the plugin counts its own with -v).
Targets: one pod in at most 2x `istioctl proxy-config listener` on it (medians of
ONE_POD_REPEATS interleaved runs), 100 pods at least 10x faster than the istioctl loop.
Needs the lab (`make cluster-up`); run: `make bench-fleet` (holds the lab lock).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))

import labctl  # noqa: E402  (the lab's records of which Envoy serves which pod)

NAMESPACE = "istio-system"
GATEWAY = "istio-internalgateway"
SELECTOR = f"app={GATEWAY}"
SIZES = (1, 10, 100)
REPEATS = 3  # medians of this many runs of each, interleaved
ONE_POD_REPEATS = 15  # one pod takes a fraction of a second: more runs for a steady median


def kubectl(kubeconfig: str, *args: str) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], check=True,
                          capture_output=True, text=True, timeout=600).stdout


def scale(kubeconfig: str, replicas: int) -> list[str]:
    kubectl(kubeconfig, "scale", f"deployment/{GATEWAY}", "-n", NAMESPACE,
            f"--replicas={replicas}")
    kubectl(kubeconfig, "rollout", "status", f"deployment/{GATEWAY}", "-n", NAMESPACE,
            "--timeout=300s")
    deadline = time.monotonic() + 300
    while True:
        pods = json.loads(kubectl(kubeconfig, "get", "pods", "-n", NAMESPACE, "-l", SELECTOR,
                                  "-o", "json"))["items"]
        running = [p["metadata"]["name"] for p in pods
                   if p["status"].get("phase") == "Running"
                   and not p["metadata"].get("deletionTimestamp")]
        if len(running) == replicas and envoys_ready(running):
            return running
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {len(running)}/{replicas} pods with a configured Envoy")
        time.sleep(1)


def envoys_ready(pods: list[str]) -> bool:
    """Every pod's own Envoy runs and has its listeners from istiod."""
    records = {r["name"]: r for r in labctl.pod_records() if r["namespace"] == NAMESPACE}
    return all(pod in records and {"0.0.0.0_8080", "0.0.0.0_8443"}
               <= labctl.dynamic_listener_names(records[pod]["admin"]) for pod in pods)


def istioctl_loop(kubeconfig: str, pods: list[str]) -> float:
    """`istioctl proxy-config listener POD -o json`, one pod at a time, as scripts do it."""
    istioctl = labctl.lab_binary("istioctl-")
    start = time.perf_counter()
    for pod in pods:
        shown = subprocess.run([istioctl, "--kubeconfig", kubeconfig, "proxy-config", "listener",
                                pod, "-n", NAMESPACE, "-o", "json"], capture_output=True,
                               text=True, timeout=120)
        if shown.returncode != 0 or not json.loads(shown.stdout):
            raise SystemExit(f"error: istioctl proxy-config listener {pod}: {shown.stderr}")
    return time.perf_counter() - start


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, int, str, str]:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed: {stderr[-500:]}")
    return wall, usage.ru_maxrss * 1024, stdout, stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scripted_loop(kubeconfig: str, pods: list[str]) -> float:
    """The anchor: for each pod, `kubectl port-forward` then GET config_dump, one at a time."""
    start = time.perf_counter()
    for pod in pods:
        port = free_port()
        forward = subprocess.Popen(["kubectl", "--kubeconfig", kubeconfig, "port-forward", "-n",
                                    NAMESPACE, f"pod/{pod}", f"{port}:15000"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert forward.stdout is not None
            forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 15000"
            url = f"http://127.0.0.1:{port}/config_dump?resource=dynamic_listeners"
            with urllib.request.urlopen(url, timeout=30) as reply:
                json.loads(reply.read())
        finally:
            forward.terminate()
            forward.wait(10)
    return time.perf_counter() - start


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: fleet.py KUBECONFIG (the path `make cluster-up` prints)", file=sys.stderr)
        return 2
    kubeconfig = sys.argv[1]
    # No PYTHON* variables: a user's Python caches bytecode (PYTHONDONTWRITEBYTECODE would not).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["KUBECONFIG"] = kubeconfig
    original = int(kubectl(kubeconfig, "get", f"deployment/{GATEWAY}", "-n", NAMESPACE, "-o",
                           "jsonpath={.spec.replicas}"))
    rows = []
    try:
        for size in SIZES:
            pods = scale(kubeconfig, size)
            walls, loops, istioctls = [], [], []
            # Interleaved, so that drift in the machine's load hits all three alike.
            for _ in range(ONE_POD_REPEATS if size == 1 else REPEATS):
                wall, rss, stdout, stderr = measured(
                    ["kubectl", "keepalive", "status", "-n", NAMESPACE, "-l", SELECTOR, "-o",
                     "json", "-v"], env)
                walls.append(wall)
                loops.append(scripted_loop(kubeconfig, pods))
                istioctls.append(istioctl_loop(kubeconfig, pods))
            read = sum(1 for g in json.loads(stdout)["gateways"] for p in g["pods"]
                       if p["listeners"])
            requests = re.search(r"(\d+) API requests", stderr)
            rows.append((size, read, median(walls), rss, requests.group(1) if requests else "?",
                         median(loops), median(istioctls)))
    finally:
        scale(kubeconfig, original)
    print(f"medians of {ONE_POD_REPEATS} (one pod) or {REPEATS} interleaved runs; peak RSS and "
          "API requests of the last")
    print("| pods | read | `status` wall | peak RSS | API requests | port-forward loop | "
          "speed-up | `istioctl pc listener` loop | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, read, wall, rss, requests, loop, istioctl in rows:
        print(f"| {size} | {read} | {wall:.2f} s | {rss / 2**20:.0f} MiB | {requests} | "
              f"{loop:.2f} s | {loop / wall:.1f}x | {istioctl:.2f} s | {istioctl / wall:.1f}x |")
    one = rows[0]
    print(f"\none pod: `status` {one[2] * 1000:.0f} ms, `istioctl proxy-config listener` "
          f"{one[6] * 1000:.0f} ms: {one[2] / one[6]:.2f}x istioctl's time (target: at most 2x); "
          f"port-forward + GET {one[5] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
