"""Rollout race: does a rolled gateway pod start before istiod has the keepalive filter?

Side by side in one run, interleaved, on the lab's istio-system/istio-ingressgateway:
  manual  `kubectl apply` of the rendered filter, then `kubectl rollout restart` at once (what is
          done by hand), then `kubectl rollout status`;
  plugin  `kubectl keepalive enable` (waits for istiod's push before restarting).
A new pod that started before istiod had the filter takes the options in place later; its
Envoy then shows a draining listener without options beside the active one. Counts those, and
the median time until the new pod shows the options. `--load N` runs N busy loops meanwhile,
as a loaded CI machine would. Needs the lab (`make cluster-up`); run:
  .venv/bin/python benchmarks/rollout_race.py "$(bash lab/cluster-up.sh)" --cycles 10 --load 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))

import labctl  # noqa: E402  (the lab's records of which Envoy serves which pod)

NAMESPACE, DEPLOYMENT = "istio-system", "istio-ingressgateway"
SELECTOR = f"app={DEPLOYMENT}"
PORTS = ("0.0.0.0_8080", "0.0.0.0_8443")
SETTINGS = ["--idle", "7s", "--interval", "5s", "--probes", "2"]


def run(argv: list[str], stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True,
                          timeout=300).stdout


def dynamic_listeners(pod: str) -> list[dict[str, Any]] | None:
    records = {(r["namespace"], r["name"]): r for r in labctl.pod_records()}
    record = records.get((NAMESPACE, pod))
    if record is None:
        return None
    url = f"http://{record['address']}:15000/config_dump?resource=dynamic_listeners"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            configs: list[dict[str, Any]] = json.loads(reply.read()).get("configs", [])
            return configs
    except OSError:
        return None


def has_options(state: dict[str, Any] | None) -> bool:
    return bool(((state or {}).get("listener") or {}).get("socket_options"))


def one_cycle(kubeconfig: str, mode: str, rendered: str) -> tuple[float, bool]:
    kubectl = ["kubectl", "--kubeconfig", kubeconfig]
    plugin = ["kubectl-keepalive", "--kubeconfig", kubeconfig]
    subprocess.run([*plugin, "disable", "-y", "-n", NAMESPACE, "-l", SELECTOR],
                   capture_output=True, timeout=300)
    run([*kubectl, "delete", "envoyfilters.networking.istio.io", "-n", NAMESPACE, "--all"])
    time.sleep(3)  # istiod's removal push settles
    start = time.monotonic()
    if mode == "manual":
        run([*kubectl, "apply", "-f", "-"], stdin=rendered)
        run([*kubectl, "rollout", "restart", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE])
        run([*kubectl, "rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE,
             "--timeout=120s"])
    else:
        run([*plugin, "enable", "-y", "-n", NAMESPACE, "-l", SELECTOR, *SETTINGS])
    deadline = time.monotonic() + 60
    while True:
        pods = json.loads(run([*kubectl, "get", "pods", "-n", NAMESPACE, "-l", SELECTOR,
                               "-o", "json"]))["items"]
        live = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
        dump = dynamic_listeners(live[0]) if len(live) == 1 else None
        active = {e["name"]: e.get("active_state") for e in dump or []}
        if dump and all(has_options(active.get(name)) for name in PORTS):
            late = any("draining_state" in e and not has_options(e["draining_state"])
                       for e in dump)
            return time.monotonic() - start, late
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {mode}: the new pod never showed the options")
        time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kubeconfig")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--load", type=int, default=0, help="busy loops to run meanwhile")
    args = parser.parse_args()
    rendered = run(["kubectl-keepalive", "enable", "--dry-run=client", "-n", NAMESPACE, "-l",
                    SELECTOR, "--port", "8080", "--port", "8443", *SETTINGS, "-o", "yaml"])
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.load)]
    results: dict[str, list[tuple[float, bool]]] = {"manual": [], "plugin": []}
    try:
        for _ in range(args.cycles):
            for mode in results:
                results[mode].append(one_cycle(args.kubeconfig, mode, rendered))
    finally:
        for proc in busy:
            proc.kill()
        subprocess.run(["kubectl-keepalive", "--kubeconfig", args.kubeconfig, "disable", "-y",
                        "-n", NAMESPACE, "-l", SELECTOR], capture_output=True, timeout=300)
    print(f"| path | cycles | new pod started without the options | median time to options "
          f"on the new pod | (busy loops: {args.load})")
    print("|---|---|---|---|")
    for mode, rows in results.items():
        late = sum(1 for _, was_late in rows if was_late)
        print(f"| {mode} | {len(rows)} | {late} | {median(t for t, _ in rows):.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
