#!/usr/bin/env python3
"""STAND-IN for istiod: not Istio. A lab helper that turns EnvoyFilters into listener config.

Until the lab runs a real istiod, this process plays the one part of it that keepalive needs: it
watches EnvoyFilters (networking.istio.io/v1alpha3) in the API server and, for each lab gateway,
applies the filters' LISTENER MERGE patches to the dynamic listeners that gateway's Envoy reads from
its file-based LDS (run/envoy/<gateway>/lds.json). It follows Istio's rules as far as they matter
here, and no further:

- a filter reaches a gateway from the gateway's own namespace or the root namespace (istio-system);
- ``workloadSelector.labels`` must all be on the gateway's pods (no selector: every workload there);
- a filter labelled ``istio.io/rev`` is processed only by that revision; unlabelled filters by all;
- patches with ``applyTo: LISTENER``, ``match.context`` GATEWAY or ANY (or unset), optional
  ``match.listener.portNumber`` / ``name``, and ``operation: MERGE`` are applied in Istio's order
  (priority, root namespace first, creation time). MERGE is protobuf merge: messages merge,
  repeated fields append (two filters adding keepalive give duplicate options), scalars replace.
  camelCase field names in the patch are accepted, as Istio accepts them.
- anything else (other operations, applyTo kinds, targetRefs) is ignored and logged.

The file is replaced atomically (write + rename), which Envoy's file watch picks up as an LDS
update. Deleting the filter restores the base listeners. It shares no code with the plugin.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import labkube

JSON = dict[str, Any]
ROOT_NAMESPACE = "istio-system"
REV_LABEL = "istio.io/rev"
PATH = "/apis/networking.istio.io/v1alpha3/envoyfilters"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} standin-istiod: {msg}", file=sys.stderr, flush=True)


def snake_keys(value: Any) -> Any:
    """Field names as Envoy's proto names (Istio's patch values may use JSON camelCase)."""
    if isinstance(value, dict):
        out: JSON = {}
        for k, v in value.items():
            key = k if k.startswith("@") or "_" in k else _CAMEL.sub("_", k).lower()
            out[key] = snake_keys(v)
        return out
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


def proto_merge(dst: JSON, src: JSON) -> JSON:
    """Protobuf MergeFrom on JSON: messages merge, repeated fields append, scalars replace."""
    out = copy.deepcopy(dst)
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = proto_merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def filter_applies(ef: JSON, gw: JSON) -> bool:
    meta = ef["metadata"]
    ns = meta.get("namespace", "")
    if ns not in (gw["namespace"], ROOT_NAMESPACE):
        return False
    rev = (meta.get("labels") or {}).get(REV_LABEL)
    if rev is not None and rev != gw["revision"]:
        return False
    spec = ef.get("spec") or {}
    if spec.get("targetRefs"):
        log(f"{ns}/{meta['name']}: targetRefs not supported by the stand-in; ignored")
        return False
    selector = ((spec.get("workloadSelector") or {}).get("labels")) or {}
    return all(gw["pod_labels"].get(k) == v for k, v in selector.items())


def order_key(ef: JSON) -> tuple[int, int, str, str]:
    meta = ef["metadata"]
    priority = int((ef.get("spec") or {}).get("priority") or 0)
    root_first = 0 if meta.get("namespace") == ROOT_NAMESPACE else 1
    return (priority, root_first, meta.get("creationTimestamp", ""), meta.get("name", ""))


def patch_matches_listener(patch: JSON, listener: JSON) -> bool:
    match = patch.get("match") or {}
    if match.get("context", "ANY") not in ("ANY", "GATEWAY"):
        return False
    lmatch = match.get("listener") or {}
    port = listener["address"]["socket_address"]["port_value"]
    if "portNumber" in lmatch and int(lmatch["portNumber"]) != port:
        return False
    return not ("name" in lmatch and lmatch["name"] != listener["name"])


def patched_listeners(base: list[JSON], filters: list[JSON]) -> tuple[list[JSON], list[str]]:
    listeners = copy.deepcopy(base)
    applied: list[str] = []
    for ef in filters:
        meta = ef["metadata"]
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        for patch in (ef.get("spec") or {}).get("configPatches") or []:
            apply_to = patch.get("applyTo")
            op = (patch.get("patch") or {}).get("operation")
            if apply_to != "LISTENER" or op != "MERGE":
                log(f"{ref}: {apply_to} {op} not supported by the stand-in; ignored")
                continue
            value = snake_keys((patch.get("patch") or {}).get("value") or {})
            for i, listener in enumerate(listeners):
                if patch_matches_listener(patch, listener):
                    listeners[i] = proto_merge(listener, value)
                    applied.append(f"{ref} -> {listener['name']}")
    return listeners, applied


class Translator:
    def __init__(self, run_dir: Path) -> None:
        self._registry = run_dir / "gateways.json"
        self._status = run_dir / "standin-status.json"

    def sync(self, filters: dict[str, JSON]) -> None:
        try:
            gateways = json.loads(self._registry.read_text())["gateways"]
        except (OSError, ValueError) as err:
            log(f"no gateway registry yet: {err}")
            return
        ordered = sorted(filters.values(), key=order_key)
        status: JSON = {}
        for gw in gateways:
            try:
                base = json.loads(Path(gw["lds_base"]).read_text())["resources"]
            except (OSError, ValueError) as err:
                log(f"{gw['key']}: no base listeners: {err}")
                continue
            mine = [ef for ef in ordered if filter_applies(ef, gw)]
            listeners, applied = patched_listeners(base, mine)
            status[gw["key"]] = applied
            body = json.dumps(listeners, sort_keys=True)
            version = hashlib.sha256(body.encode()).hexdigest()[:12]
            doc = {"version_info": version, "resources": listeners}
            lds = Path(gw["lds"])
            try:
                current = json.loads(lds.read_text()).get("version_info")
            except (OSError, ValueError):
                current = None
            if current == version:
                continue
            tmp = lds.with_name(f".{lds.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            tmp.replace(lds)  # atomic: Envoy watches the path for moves
            log(f"{gw['key']}: listeners version {version} ({len(applied)} patch(es))")
        tmp_status = self._status.with_name(self._status.name + ".tmp")
        tmp_status.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
        tmp_status.replace(self._status)


def main() -> int:
    parser = argparse.ArgumentParser(description="STAND-IN for istiod (lab only)")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()
    kubectl = os.environ.get("KEEPALIVE_KUBECTL", "kubectl")
    client = labkube.Client(labkube.load_endpoint(args.kubeconfig, kubectl))
    translator = Translator(Path(args.run_dir))
    log("watching EnvoyFilters")
    labkube.informer(client, PATH, translator.sync, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
