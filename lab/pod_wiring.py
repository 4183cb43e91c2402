#!/usr/bin/env python3
"""Plays the kubelet for the lab's gateway pods: one real Envoy per pod, wired to kwok.

kwok runs the pods only on paper. For every pod that a seeded gateway's selector matches (same
namespace, as a Deployment would), this process does what a kubelet and CNI would:

- makes the pod a network namespace of its own (``kalab-<uid>``) with one address from the lab's
  pod network, routed from the host (the "node", which answers on ``NODE_ADDRESS``);
- starts the pod's ``istio-proxy`` there: the real Envoy with an ADS bootstrap in the pod's
  identity (gateways.ads_bootstrap), so that the real istiod of the pod's revision configures it;
- writes kwok's PortForward and Exec objects named after the pod (owned by it, so the garbage
  collector removes them with the pod):

    port-forward 15000, 15021, 15090 and the listener ports -> the pod's address
    exec -c istio-proxy CMD -> CMD on this machine with LAB_ENVOY_ADMIN and LAB_POD_NETNS set;
                               lab/shims provides `pilot-agent` and `ss` for such commands

When a pod goes away (a rollout, a scale-down), its Envoy is stopped and its namespace removed;
its replacement gets a fresh Envoy with the new pod's identity. An Envoy that exits is started
again (fresh namespace and token) within a few seconds, as a kubelet restarts a container. Pods
recorded by an earlier run of this process are adopted: a live Envoy is kept, a dead one
restarted. State: ``RUN_DIR/pods/<uid>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gateways as gws
import labkube

JSON = dict[str, Any]
GROUP = "/apis/kwok.x-k8s.io/v1alpha1"
NETNS_PREFIX = "kalab-"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} pod-wiring: {msg}", file=sys.stderr, flush=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass
class PodRecord:
    """One wired pod, as saved in pods/<uid>/pod.json."""

    namespace: str
    name: str
    uid: str
    gateway: str
    address: str
    netns: str
    veth: str
    bootstrap: str
    log: str
    pid: int = 0
    wired: bool = False  # kwok's PortForward and Exec objects exist for this pod

    @property
    def admin(self) -> str:
        return f"{self.address}:15000"

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({**asdict(self), "admin": self.admin}, indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PodRecord:
        data = json.loads(path.read_text())
        data.pop("admin", None)
        return cls(**data)


def process_alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def stop_process(pid: int, marker: str, grace_s: float = 5.0) -> None:
    if not process_alive(pid, marker):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and process_alive(pid, marker):
        time.sleep(0.05)
    if process_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def ensure_node_address() -> None:
    """The host's side of the pod network: NODE_ADDRESS, held on loopback (a /32 of its own;
    the kernel delivers it locally from every pod's veth, as a node does its own address)."""
    ip("addr", "replace", f"{gws.NODE_ADDRESS}/32", "dev", "lo")


def remove_node_address() -> None:
    ip("addr", "del", f"{gws.NODE_ADDRESS}/32", "dev", "lo", check=False)


def make_pod_network(netns: str, veth: str, address: str) -> None:
    """A namespace with loopback and eth0 (address/32), routed point to point via the node."""
    ip("netns", "del", netns, check=False)
    ip("link", "del", veth, check=False)
    ip("netns", "add", netns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    ip("link", "set", veth, "up")
    ip("route", "replace", f"{address}/32", "dev", veth, "src", gws.NODE_ADDRESS)
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "addr", "add", f"{address}/32", "dev", "eth0")
    ip("-n", netns, "link", "set", "eth0", "up")
    # Only the node is reachable: no default route, so nothing a pod sends leaves the machine.
    ip("-n", netns, "route", "add", gws.NODE_ADDRESS, "dev", "eth0", "scope", "link")


def remove_pod_network(netns: str, veth: str) -> None:
    ip("netns", "del", netns, check=False)  # takes eth0 and so its veth peer with it
    ip("link", "del", veth, check=False)


def wiring_objects(pod: JSON, record: PodRecord, listener_ports: list[int]) -> tuple[JSON, JSON]:
    meta = pod["metadata"]
    owner = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
    obj_meta = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "ownerReferences": [owner],
        "labels": {"keepalive-lab/gateway": record.gateway.split("/", 1)[1]},
    }
    forwards = [{"ports": [port], "target": {"address": record.address, "port": port}}
                for port in [15000, 15021, 15090, *listener_ports]]
    port_forward = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "PortForward",
        "metadata": obj_meta,
        "spec": {"forwards": forwards},
    }
    envs = [
        {"name": "LAB_ENVOY_ADMIN", "value": record.admin},
        {"name": "LAB_POD_NETNS", "value": record.netns},
        {"name": "LAB_POD_NAME", "value": meta["name"]},
        {"name": "LAB_POD_NAMESPACE", "value": meta["namespace"]},
    ]
    exec_obj = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Exec",
        "metadata": obj_meta,
        "spec": {"execs": [{"containers": ["istio-proxy"], "local": {"envs": envs}}]},
    }
    return port_forward, exec_obj


def gateway_for(pod: JSON, gateways: list[JSON]) -> JSON | None:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    for gw in gateways:
        if gw["namespace"] == meta.get("namespace") and all(
            labels.get(k) == v for k, v in gw["selector"].items()
        ):
            return gw
    return None


class Kubelet:
    """Keeps one Envoy (in its own network namespace) per running gateway pod."""

    def __init__(self, client: labkube.Client, run_dir: Path, envoy: str) -> None:
        self._client = client
        self._run_dir = run_dir
        self._pods_dir = run_dir / "pods"
        self._pods_dir.mkdir(parents=True, exist_ok=True)
        self._envoy = envoy
        self._drain = os.environ.get("KEEPALIVE_LAB_DRAIN_S", "5")
        self._lock = threading.RLock()
        self._last_pods: dict[str, JSON] | None = None
        self.records: dict[str, PodRecord] = {}
        for path in sorted(self._pods_dir.glob("*/pod.json")):
            try:
                record = PodRecord.load(path)
            except (OSError, ValueError, TypeError) as err:
                log(f"ignoring {path}: {err}")
                continue
            self.records[record.uid] = record

    def _gateways(self) -> list[JSON]:
        try:
            return list(json.loads((self._run_dir / "gateways.json").read_text())["gateways"])
        except (OSError, ValueError, KeyError):
            return []

    def _free_address(self) -> str:
        used = {r.address for r in self.records.values()}
        first = ipaddress.IPv4Address(gws.POD_NETWORK_FIRST)
        last = ipaddress.IPv4Address(gws.POD_NETWORK_LAST)
        candidate = first
        while candidate <= last:
            if str(candidate) not in used and not str(candidate).endswith((".0", ".255")):
                return str(candidate)
            candidate += 1
        raise RuntimeError("the lab's pod network is full")

    def sync(self, pods: dict[str, JSON]) -> None:
        """Brings the running Envoys in line with the pods; one pod's failure is logged and
        retried on the next sync (the watchdog syncs every few seconds), never fatal."""
        with self._lock:
            self._last_pods = pods
            gateways = self._gateways()
            wanted: dict[str, tuple[JSON, JSON]] = {}
            for pod in pods.values():
                meta = pod["metadata"]
                if meta.get("deletionTimestamp") or not (pod.get("status") or {}).get("podIP"):
                    continue
                gw = gateway_for(pod, gateways)
                if gw is not None:
                    wanted[meta["uid"]] = (pod, gw)
            for uid in [u for u in self.records if u not in wanted]:
                record = self.records.pop(uid)
                try:
                    self._stop(record)
                except Exception as err:  # keep serving the other pods
                    log(f"stop {record.namespace}/{record.name}: {err}")
            for uid, (pod, gw) in wanted.items():
                record = self.records.get(uid)
                if record is not None and record.wired and process_alive(record.pid,
                                                                          record.bootstrap):
                    continue
                try:
                    self._start(pod, gw, record)
                except Exception as err:  # logged; the next sync retries
                    meta = pod["metadata"]
                    log(f"start {meta['namespace']}/{meta['name']}: {err}")

    def resync(self) -> None:
        """The watchdog's tick: the last pod set again, so failed starts and crashed Envoys
        (a kubelet restarts crashed containers) are retried without waiting for an event."""
        with self._lock:
            pods = self._last_pods
        if pods is not None:
            self.sync(pods)

    def _start(self, pod: JSON, gw: JSON, old: PodRecord | None) -> None:
        """Namespace, Envoy and kwok objects for one pod. On failure a new pod's namespace and
        files are removed again; an adopted record keeps its address for the retry."""
        meta = pod["metadata"]
        uid = meta["uid"]
        pod_dir = self._pods_dir / uid
        pod_dir.mkdir(parents=True, exist_ok=True)
        record = old or PodRecord(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=uid,
            gateway=gw["namespace"] + "/" + gw["name"],
            address=self._free_address(),
            netns=NETNS_PREFIX + uid[:8],
            veth="kl" + uid[:8],
            bootstrap=str(pod_dir / "bootstrap.json"),
            log=str(pod_dir / "envoy.log"),
        )
        try:
            if not process_alive(record.pid, record.bootstrap):
                self._launch(pod, gw, record)
            if not record.wired:
                self._wire(pod, gw, record)
        except BaseException:
            if old is None:
                stop_process(record.pid, record.bootstrap)
                remove_pod_network(record.netns, record.veth)
                shutil.rmtree(pod_dir, ignore_errors=True)
            raise
        self.records[uid] = record
        record.save(pod_dir / "pod.json")
        log(f"started {record.namespace}/{record.name} ({gw['namespace']}/{gw['name']}) "
            f"at {record.address} in {record.netns}, pid {record.pid}")

    def _launch(self, pod: JSON, gw: JSON, record: PodRecord) -> None:
        """A fresh namespace and an Envoy with a fresh token, as a container (re)start gets."""
        meta = pod["metadata"]
        make_pod_network(record.netns, record.veth, record.address)
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        identity = gws.PodIdentity(
            namespace=record.namespace,
            name=record.name,
            uid=record.uid,
            labels=dict(meta.get("labels") or {}),
            instance_ip=pod["status"]["podIP"],
            address=record.address,
            deployment=gw["name"],  # seeded gateways: Deployment name = gateway name
            service_account=account,
            revision=gw["revision"],
            token=self._token(pod, account),
        )
        Path(record.bootstrap).write_text(gws.dumps(gws.ads_bootstrap(identity)))
        self._run_envoy(record)

    def _wire(self, pod: JSON, gw: JSON, record: PodRecord) -> None:
        for obj, plural in zip(wiring_objects(pod, record, gw["listener_ports"]),
                               ("portforwards", "execs"), strict=True):
            path = f"{GROUP}/namespaces/{record.namespace}/{plural}"
            try:
                self._client.create(path, obj)
            except labkube.ApiError as err:
                if err.status != 409:
                    raise
                # A stale object of an earlier run: replace it so it names this pod's address.
                self._client.delete(f"{path}/{record.name}")
                self._client.create(path, obj)
        record.wired = True

    def _token(self, pod: JSON, account: str) -> str:
        """A token of the pod's service account for istiod (audience istio-ca), bound to the pod
        as the kubelet's projected token is."""
        meta = pod["metadata"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": ["istio-ca"],
                # Long enough for a lab kept up for weeks: a restarted Envoy gets a new one,
                # but one that only reconnects (istiod restarted) still sends this one.
                "expirationSeconds": 30 * 86400,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "uid": meta["uid"]},
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
        return str(self._client.create(path, request)["status"]["token"])

    def _run_envoy(self, record: PodRecord) -> None:
        argv = ["ip", "netns", "exec", record.netns, self._envoy, "-c", record.bootstrap,
                "--disable-hot-restart", "--concurrency", "1", "--drain-time-s", self._drain,
                "--drain-strategy", "immediate", "--log-level", "warn"]
        with open(record.log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        record.pid = proc.pid
        record.save(Path(record.bootstrap).with_name("pod.json"))

    def _stop(self, record: PodRecord) -> None:
        stop_process(record.pid, record.bootstrap)
        remove_pod_network(record.netns, record.veth)
        shutil.rmtree(Path(record.bootstrap).parent, ignore_errors=True)
        log(f"stopped {record.namespace}/{record.name} ({record.address})")


def teardown(run_dir: Path) -> None:
    """Stops every pod Envoy and removes every pod namespace and the node address."""
    for path in sorted((run_dir / "pods").glob("*/pod.json")):
        try:
            record = PodRecord.load(path)
        except (OSError, ValueError, TypeError):
            continue
        stop_process(record.pid, record.bootstrap, grace_s=2.0)
        remove_pod_network(record.netns, record.veth)
        shutil.rmtree(path.parent, ignore_errors=True)
    listed = ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ", 1)[0]
        if name.startswith(NETNS_PREFIX):
            ip("netns", "del", name, check=False)
    remove_node_address()


def main() -> int:
    parser = argparse.ArgumentParser(description="run one Envoy per lab gateway pod")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--envoy", required=True)
    args = parser.parse_args()
    kubectl = os.environ.get("KEEPALIVE_KUBECTL", "kubectl")
    client = labkube.Client(labkube.load_endpoint(args.kubeconfig, kubectl))
    ensure_node_address()
    kubelet = Kubelet(client, Path(args.run_dir), args.envoy)

    def watchdog() -> None:
        while True:
            time.sleep(2.0)
            try:
                kubelet.resync()
            except Exception as err:  # the watchdog outlives any one error
                log(f"resync: {err}")

    threading.Thread(target=watchdog, daemon=True).start()
    log("watching pods")
    labkube.informer(client, "/api/v1/pods", kubelet.sync, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
