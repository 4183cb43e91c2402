"""When a gateway pod's Envoy cuts what is in flight: drain and termination timings, with sources.

istiod's push replaces a listener whose socket options change; Envoy closes what is still open
on the old one after `--drain-time-s`, which pilot-agent sets from the proxy config's
`drainDuration`. A rolled pod gets SIGTERM; pilot-agent drains for `terminationDrainDuration`
and the kubelet kills at `terminationGracePeriodSeconds`. The proxy config is the pod's
`proxy.istio.io/config` annotation over the mesh config's `defaultConfig` (ConfigMap `istio`, or
`istio-<rev>` for a revisioned control plane) over Istio's defaults.

Pure: raw objects and texts in, timings that name where each number came from out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.model import PROXY_CONFIG_ANNOTATION as ANNOTATION

MESH_KEY = "mesh"
# Istio's documented defaults (ProxyConfig reference; Kubernetes' pod spec for the grace period).
DEFAULT_DRAIN_S = 45.0
DEFAULT_TERMINATION_DRAIN_S = 5.0
DEFAULT_GRACE_S = 30.0

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class Timing:
    seconds: float
    source: str  # where the number came from, in words for the plan


@dataclass(frozen=True)
class Timings:
    drain: Timing  # istiod's push: old listener closed this long after the update
    termination_drain: Timing  # rollout: pilot-agent drains this long after SIGTERM
    grace: Timing  # rollout: the kubelet kills the pod this long after SIGTERM

    @property
    def pod_end(self) -> Timing:
        """When a rolled pod's connections end: the agent's drain, cut short by the kubelet."""
        if self.grace.seconds < self.termination_drain.seconds:
            return Timing(self.grace.seconds, f"terminationGracePeriodSeconds from "
                                              f"{self.grace.source}")
        return Timing(self.termination_drain.seconds,
                      f"terminationDrainDuration from {self.termination_drain.source}")


def parse_duration(value: Any) -> float | None:
    """Seconds of a protobuf Duration as JSON/YAML writes it ("45s", "1m30s", "1.5s"), or a
    bare number of seconds; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if isinstance(value, dict):  # {seconds, nanos}, as some tools write it
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if _PART.sub("", text) != "":
        try:
            number = float(text)
        except ValueError:
            return None
        return number if number >= 0 else None
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))


def parse_config(text: str) -> dict[str, Any]:
    """A ProxyConfig or MeshConfig document (YAML, of which JSON is a part). ValueError when it
    is not a mapping."""
    import yaml

    try:
        loaded = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError("not a mapping")
    return loaded


def mesh_default_config(mesh_text: str) -> dict[str, Any]:
    """The `defaultConfig` (a ProxyConfig) of a MeshConfig document."""
    found = parse_config(mesh_text).get("defaultConfig") or {}
    if not isinstance(found, dict):
        raise ValueError("defaultConfig is not a mapping")
    return found


def configmap_name(revision: str | None) -> str:
    """The ConfigMap istiod reads its mesh config from for a revision."""
    return "istio" if revision in (None, "", "default") else f"istio-{revision}"


def resolve(annotation: str | None, mesh_default: dict[str, Any] | None, mesh_source: str,
            grace_seconds: Any) -> tuple[Timings, list[str]]:
    """The pod's timings: annotation over mesh `defaultConfig` over Istio's defaults, and the
    pod spec's grace period over Kubernetes' default. Also notes on values that were unusable
    (a bad annotation is pilot-agent's problem too: it says so, we fall back and say so)."""
    notes: list[str] = []
    pod_config: dict[str, Any] = {}
    if annotation is not None:
        try:
            pod_config = parse_config(annotation)
        except ValueError as exc:
            notes.append(f"annotation {ANNOTATION} unreadable ({exc}); ignored")
    layers = [(pod_config, f"annotation {ANNOTATION}"),
              (mesh_default or {}, mesh_source)]

    def pick(key: str, default: float) -> Timing:
        for config, source in layers:
            if key not in config:
                continue
            seconds = parse_duration(config[key])
            if seconds is not None:
                return Timing(seconds, source)
            notes.append(f"{source}: {key} {json.dumps(config[key], default=str)} is not a "
                         "duration; ignored")
        return Timing(default, "Istio default")

    grace = Timing(DEFAULT_GRACE_S, "Kubernetes default")
    if isinstance(grace_seconds, int) and not isinstance(grace_seconds, bool) \
            and grace_seconds >= 0:
        grace = Timing(float(grace_seconds), "pod spec")
    timings = Timings(pick("drainDuration", DEFAULT_DRAIN_S),
                      pick("terminationDrainDuration", DEFAULT_TERMINATION_DRAIN_S), grace)
    return timings, notes
