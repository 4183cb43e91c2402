#!/usr/bin/env python3
"""Wires every gateway pod that kwok runs to the real Envoy behind its gateway.

kwok serves `kubectl port-forward` and `kubectl exec` for its fake pods from PortForward and Exec
objects (kwok.x-k8s.io/v1alpha1) named after the pod. This process watches pods, finds the lab
gateway whose selector matches a pod's labels (same namespace, as a Deployment would), and creates
both objects for it, owned by the pod so the garbage collector removes them with the pod. Pods
made later by a rollout are wired the same way, so the mapping follows labels, never pod names.

  port-forward 15000        -> that gateway's Envoy admin (127.0.0.1:<admin port>)
  port-forward 15021, 15090, listener ports -> the gateway's loopback address
  exec -c istio-proxy CMD   -> CMD on this machine with LAB_ENVOY_ADMIN and LAB_GATEWAY_ADDRESS
                               set; lab/shims provides `pilot-agent` and `ss` for such commands
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import labkube

JSON = dict[str, Any]
GROUP = "/apis/kwok.x-k8s.io/v1alpha1"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} pod-wiring: {msg}", file=sys.stderr, flush=True)


class Registry:
    """run/gateways.json, re-read whenever it changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = -1.0
        self.gateways: list[JSON] = []

    def refresh(self) -> None:
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self.gateways = json.loads(self._path.read_text())["gateways"]
            self._mtime = mtime

    def for_pod(self, pod: JSON) -> JSON | None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        for gw in self.gateways:
            if gw["namespace"] != meta.get("namespace"):
                continue
            if all(labels.get(k) == v for k, v in gw["selector"].items()):
                return gw
        return None


def wiring_objects(pod: JSON, gw: JSON) -> tuple[JSON, JSON]:
    meta = pod["metadata"]
    owner = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": meta["name"],
        "uid": meta["uid"],
    }
    obj_meta = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "ownerReferences": [owner],
        "labels": {"keepalive-lab/gateway": gw["name"]},
    }
    admin_host, admin_port = gw["admin"].rsplit(":", 1)
    forwards: list[JSON] = [
        {"ports": [15000], "target": {"address": admin_host, "port": int(admin_port)}}
    ]
    for port in [15021, 15090, *gw["listener_ports"]]:
        forwards.append({"ports": [port], "target": {"address": gw["address"], "port": port}})
    port_forward = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "PortForward",
        "metadata": obj_meta,
        "spec": {"forwards": forwards},
    }
    envs = [
        {"name": "LAB_ENVOY_ADMIN", "value": gw["admin"]},
        {"name": "LAB_GATEWAY_ADDRESS", "value": gw["address"]},
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


class Wiring:
    def __init__(self, client: labkube.Client, registry: Registry) -> None:
        self._client = client
        self._registry = registry
        self._done: set[str] = set()  # pod uids already wired

    def sync(self, pods: dict[str, JSON]) -> None:
        self._registry.refresh()
        live = set()
        for pod in pods.values():
            meta = pod["metadata"]
            uid = meta.get("uid", "")
            live.add(uid)
            if uid in self._done or meta.get("deletionTimestamp"):
                continue
            gw = self._registry.for_pod(pod)
            if gw is None:
                continue
            ns = meta["namespace"]
            for obj, plural in zip(wiring_objects(pod, gw), ("portforwards", "execs"), strict=True):
                try:
                    self._client.create(f"{GROUP}/namespaces/{ns}/{plural}", obj)
                except labkube.ApiError as err:
                    if err.status != 409:
                        log(f"create {plural} {ns}/{meta['name']}: {err}")
                        break
            else:
                self._done.add(uid)
                log(f"wired {ns}/{meta['name']} -> {gw['key']} (admin {gw['admin']})")
        self._done &= live


def main() -> int:
    parser = argparse.ArgumentParser(description="wire kwok gateway pods to lab Envoys")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()
    kubectl = os.environ.get("KEEPALIVE_KUBECTL", "kubectl")
    client = labkube.Client(labkube.load_endpoint(args.kubeconfig, kubectl))
    wiring = Wiring(client, Registry(Path(args.run_dir) / "gateways.json"))
    log("watching pods")
    labkube.informer(client, "/api/v1/pods", wiring.sync, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
