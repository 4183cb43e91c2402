#!/usr/bin/env python3
"""Plays the kubelet for every lab pod that runs an Istio proxy: one real Envoy per pod.

kwok runs the pods only on paper. For every pod with an ``istio-proxy`` container, in any
namespace (the seeded gateways and whatever a test applies: Helm-style gateways, egress and
east-west gateways, waypoints), this process does what a kubelet and CNI would:

- makes the pod a network namespace of its own (``kalab-<uid>``) with one address from the lab's
  pod network, routed from the host (the "node", which answers on ``NODE_ADDRESS``);
- starts the pod's ``istio-proxy`` there: the real Envoy with an ADS bootstrap in the pod's
  identity (gateways.ads_bootstrap: node type from the container's ``proxy <type>`` args,
  ``ISTIO_META_*`` env as node metadata, the Deployment from the pod's owners), so that the real
  istiod of the pod's revision configures it;
- writes kwok's PortForward and Exec objects named after the pod (owned by it, so the garbage
  collector removes them with the pod):

    port-forward 15000, 15021, 15090 and the ports the pod's containers declare -> the pod's address
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
import re
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
    gateway: str  # "<namespace>/<Deployment>" (the pod's name when it has no Deployment)
    address: str
    netns: str
    veth: str
    bootstrap: str
    log: str
    pid: int = 0
    wired: bool = False  # kwok's PortForward and Exec objects exist for this pod
    proxy_type: str = "router"  # pilot-agent's `proxy <type>`: router, waypoint, sidecar
    revision: str = "default"  # the istiod revision that configures this Envoy
    drain_s: int = 45  # --drain-time-s as pilot-agent passes it (proxy config drainDuration)

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


_DRAIN = re.compile(r"""drainDuration["']?\s*:\s*["']?(\d+)(ms|s|m)?["']?""")


def drain_duration_s(proxy_config: str) -> int | None:
    """`drainDuration` of a ProxyConfig written as YAML or JSON (`5s`, `1m`), whole seconds and
    at least 1 as Envoy takes them; None when the text does not set it. A regular expression,
    not a YAML parser: the lab's helpers use the standard library only."""
    found = _DRAIN.search(proxy_config)
    if found is None:
        return None
    number, unit = int(found.group(1)), found.group(2) or "s"
    seconds = number * 60 if unit == "m" else number // 1000 if unit == "ms" else number
    return max(1, seconds)


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


# The bootstrap's own ports, forwarded on every pod (real gateway pods declare 15021 and 15090 but
# never the admin's 15000, which `istioctl proxy-config` still reaches).
BOOTSTRAP_PORTS = (15000, 15021, 15090)
PROXY_CONTAINER = "istio-proxy"


def proxy_container(pod: JSON) -> JSON | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == PROXY_CONTAINER:
            return dict(container)
    return None


def declared_ports(pod: JSON) -> list[int]:
    """Every port the pod's containers declare (TCP or UDP, once each), bootstrap ports first."""
    ports = list(BOOTSTRAP_PORTS)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            number = int(port["containerPort"])
            if number not in ports:
                ports.append(number)
    return ports


def proxy_type(container: JSON) -> str:
    """pilot-agent's node type: `proxy <type>` in the args (`proxy router`, `proxy waypoint`);
    a bare `proxy` is a sidecar, as pilot-agent defaults."""
    args = [str(a) for a in container.get("args") or []]
    if len(args) >= 2 and args[0] == "proxy" and not args[1].startswith("-"):
        return args[1]
    return "sidecar"


def env_metadata(pod: JSON, container: JSON) -> dict[str, str]:
    """pilot-agent turns each `ISTIO_META_<KEY>` env var into node metadata KEY (ROUTER_MODE
    and REQUESTED_NETWORK_VIEW for east-west gateways, NETWORK, INTERCEPTION_MODE, ...); values
    from the pod's own fields are resolved as the kubelet would."""
    fields = {
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
    }
    out: dict[str, str] = {}
    for env in container.get("env") or []:
        name = str(env.get("name", ""))
        if not name.startswith("ISTIO_META_"):
            continue
        if "value" in env:
            out[name.removeprefix("ISTIO_META_")] = str(env["value"])
            continue
        path = ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if path in fields:
            out[name.removeprefix("ISTIO_META_")] = str(fields[path])
    return out


def resolve_revision(pod: JSON, namespace_labels: dict[str, str]) -> str:
    """The istiod revision that serves a pod: the injector's `istio.io/rev` annotation (the
    revision itself), else the pod's `istio.io/rev` label, else the namespace's, else default.
    A revision tag maps to its revision; an unknown revision falls back to default."""
    meta = pod["metadata"]
    rev = ((meta.get("annotations") or {}).get("istio.io/rev")
           or (meta.get("labels") or {}).get("istio.io/rev")
           or namespace_labels.get("istio.io/rev")
           or "default")
    if rev == gws.REVISION_TAG:
        rev = gws.REVISION_TAG_TARGET
    return rev if rev in gws.XDS_PORTS else "default"


def wiring_objects(pod: JSON, record: PodRecord, ports: list[int]) -> tuple[JSON, JSON]:
    meta = pod["metadata"]
    owner = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
    obj_meta = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "ownerReferences": [owner],
        "labels": {"keepalive-lab/gateway": record.gateway.split("/", 1)[1]},
    }
    forwards = [{"ports": [port], "target": {"address": record.address, "port": port}}
                for port in ports]
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
        "spec": {"execs": [{"containers": [PROXY_CONTAINER], "local": {"envs": envs}}]},
    }
    return port_forward, exec_obj


class Kubelet:
    """Keeps one Envoy (in its own network namespace) per running gateway pod."""

    def __init__(self, client: labkube.Client, run_dir: Path, envoy: str) -> None:
        self._client = client
        self._run_dir = run_dir
        self._pods_dir = run_dir / "pods"
        self._pods_dir.mkdir(parents=True, exist_ok=True)
        self._envoy = envoy
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

    def _deployment_of(self, pod: JSON) -> str:
        """The pod's Deployment, through its ReplicaSet's owner (as `kubectl rollout` sees it);
        the ReplicaSet's name, or the pod's, when there is no Deployment above it."""
        meta = pod["metadata"]
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") != "ReplicaSet":
                continue
            try:
                rs = self._client.list(
                    f"/apis/apps/v1/namespaces/{meta['namespace']}/replicasets/{ref['name']}")
            except labkube.ApiError:
                return str(ref["name"]).rsplit("-", 1)[0]
            for owner in rs["metadata"].get("ownerReferences") or []:
                if owner.get("kind") == "Deployment":
                    return str(owner["name"])
            return str(ref["name"])
        return str(meta["name"])

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        try:
            ns = self._client.list(f"/api/v1/namespaces/{namespace}")
        except labkube.ApiError:
            return {}
        return dict(ns["metadata"].get("labels") or {})

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
            wanted: dict[str, JSON] = {}
            for pod in pods.values():
                meta = pod["metadata"]
                if meta.get("deletionTimestamp") or not (pod.get("status") or {}).get("podIP"):
                    continue
                if proxy_container(pod) is not None:
                    wanted[meta["uid"]] = pod
            for uid in [u for u in self.records if u not in wanted]:
                record = self.records.pop(uid)
                try:
                    self._stop(record)
                except Exception as err:  # keep serving the other pods
                    log(f"stop {record.namespace}/{record.name}: {err}")
            for uid, pod in wanted.items():
                known = self.records.get(uid)
                if known is not None and known.wired and process_alive(known.pid,
                                                                       known.bootstrap):
                    continue
                try:
                    self._start(pod, known)
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

    def _start(self, pod: JSON, old: PodRecord | None) -> None:
        """Namespace, Envoy and kwok objects for one pod. On failure a new pod's namespace and
        files are removed again; an adopted record keeps its address for the retry."""
        meta = pod["metadata"]
        uid = meta["uid"]
        pod_dir = self._pods_dir / uid
        pod_dir.mkdir(parents=True, exist_ok=True)
        container = proxy_container(pod) or {}
        record = old or PodRecord(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=uid,
            gateway=meta["namespace"] + "/" + self._deployment_of(pod),
            address=self._free_address(),
            netns=NETNS_PREFIX + uid[:8],
            veth="kl" + uid[:8],
            bootstrap=str(pod_dir / "bootstrap.json"),
            log=str(pod_dir / "envoy.log"),
            proxy_type=proxy_type(container),
            revision=resolve_revision(pod, self._namespace_labels(meta["namespace"])),
        )
        if old is None:
            record.drain_s = self._drain_seconds(pod, record.revision)
        try:
            if not process_alive(record.pid, record.bootstrap):
                self._launch(pod, container, record)
            if not record.wired:
                self._wire(pod, record)
        except BaseException:
            if old is None:
                stop_process(record.pid, record.bootstrap)
                remove_pod_network(record.netns, record.veth)
                shutil.rmtree(pod_dir, ignore_errors=True)
            raise
        self.records[uid] = record
        record.save(pod_dir / "pod.json")
        log(f"started {record.namespace}/{record.name} ({record.proxy_type} of "
            f"{record.gateway}, revision {record.revision}) at {record.address} in "
            f"{record.netns}, pid {record.pid}")

    def _launch(self, pod: JSON, container: JSON, record: PodRecord) -> None:
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
            deployment=record.gateway.split("/", 1)[1],
            service_account=account,
            revision=record.revision,
            token=self._token(pod, account),
            node_type=record.proxy_type,
            env_metadata=env_metadata(pod, container),
        )
        Path(record.bootstrap).write_text(gws.dumps(gws.ads_bootstrap(identity)))
        self._run_envoy(record)

    def _wire(self, pod: JSON, record: PodRecord) -> None:
        for obj, plural in zip(wiring_objects(pod, record, declared_ports(pod)),
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

    def _drain_seconds(self, pod: JSON, revision: str) -> int:
        """What pilot-agent passes as --drain-time-s: the proxy config's drainDuration from the
        pod's `proxy.istio.io/config` annotation, else from the mesh config's defaultConfig of
        the pod's revision (the file its istiod reads), else Istio's default of 45 s."""
        annotations = pod["metadata"].get("annotations") or {}
        mesh = self._run_dir / f"istiod-{revision}" / "mesh.yaml"
        sources = [annotations.get("proxy.istio.io/config") or ""]
        with contextlib.suppress(OSError):
            sources.append(mesh.read_text())
        for text in sources:
            found = drain_duration_s(text)
            if found is not None:
                return found
        return 45

    def _run_envoy(self, record: PodRecord) -> None:
        argv = ["ip", "netns", "exec", record.netns, self._envoy, "-c", record.bootstrap,
                "--disable-hot-restart", "--concurrency", "1",
                "--drain-time-s", str(record.drain_s),
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
