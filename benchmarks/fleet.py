"""Fleet: `kubectl keepalive status` over 1, 10 and 100 gateway pods of the lab cluster.

Side by side in one run with what users script today: a sequential loop of `kubectl port-forward`
plus an HTTP GET of `config_dump` per pod. Reports wall time, peak RSS and API requests (the
plugin counts its own with -v). Targets: 100 pods in under 10 s, at least 5x faster than the loop.
Needs the lab (`make cluster-up`); run: `make bench-fleet`.
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

NAMESPACE = "istio-system"
GATEWAY = "istio-internalgateway"
SELECTOR = f"app={GATEWAY}"
SIZES = (1, 10, 100)


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
        if len(running) == replicas or time.monotonic() > deadline:
            return running
        time.sleep(1)


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
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    original = int(kubectl(kubeconfig, "get", f"deployment/{GATEWAY}", "-n", NAMESPACE, "-o",
                           "jsonpath={.spec.replicas}"))
    rows = []
    try:
        for size in SIZES:
            pods = scale(kubeconfig, size)
            wall, rss, stdout, stderr = measured(
                ["kubectl", "keepalive", "status", "-n", NAMESPACE, "-l", SELECTOR, "-o", "json",
                 "-v"], env)
            read = sum(1 for g in json.loads(stdout)["gateways"] for p in g["pods"]
                       if p["listeners"])
            requests = re.search(r"(\d+) API requests", stderr)
            loop = scripted_loop(kubeconfig, pods)
            rows.append((size, read, wall, rss, requests.group(1) if requests else "?", loop))
    finally:
        scale(kubeconfig, original)
    print("| pods | read | `status` wall | peak RSS | API requests | port-forward loop | "
          "speed-up |")
    print("|---|---|---|---|---|---|---|")
    for size, read, wall, rss, requests, loop in rows:
        print(f"| {size} | {read} | {wall:.2f} s | {rss / 2**20:.0f} MiB | {requests} | "
              f"{loop:.2f} s | {loop / wall:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
