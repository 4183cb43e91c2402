"""The managed EnvoyFilter as a plain dict, Istio's MERGE as a prediction, and foreign filters.

Pure. The filter patches only the gateway's TCP listeners on the chosen ports: `applyTo:
LISTENER`, `context: GATEWAY`, `portNumber`, MERGE of `socket_options`. When the live listener
name is known it is matched too, because a port-only match also hits an HTTP/3 listener
(`udp_0.0.0.0_443`), and TCP options on a UDP socket make Envoy reject it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.envoy import envoy_dump, sockopts
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import (
    REVISION_LABEL,
    Gateway,
    KeepaliveSettings,
    SocketOption,
    TcpKeepalive,
)

API_VERSION = "networking.istio.io/v1alpha3"
KIND = "EnvoyFilter"
NAME_PREFIX = "keepalive-"
# The label that marks the filters this plugin writes and may change or delete.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kubectl-keepalive"
_NAME_MAX = 253  # EnvoyFilter names are DNS subdomains


@dataclass(frozen=True)
class PortTarget:
    """A port to patch and, when known from the live config, the TCP listener's name."""

    port: int
    listener_name: str | None = None


def managed_name(gateway_name: str) -> str:
    """`keepalive-<gateway>`: one filter per gateway, found again by name alone."""
    return f"{NAME_PREFIX}{gateway_name}"[:_NAME_MAX].rstrip("-.")


def render(
    namespace: str,
    gateway_name: str,
    selector: Mapping[str, str],
    revision: str | None,
    targets: Iterable[PortTarget],
    settings: KeepaliveSettings,
) -> dict[str, Any]:
    """The EnvoyFilter `enable` writes, as a dict ready for the API or for YAML."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    if revision:
        labels[REVISION_LABEL] = revision  # only that revision's istiod processes the filter
    patches = []
    for target in sorted(targets, key=lambda t: t.port):
        listener: dict[str, Any] = {"portNumber": target.port}
        if target.listener_name:
            listener["name"] = target.listener_name
        patches.append(
            {
                "applyTo": "LISTENER",
                "match": {"context": "GATEWAY", "listener": listener},
                "patch": {
                    "operation": "MERGE",
                    "value": {
                        "socket_options": sockopts.to_envoy_json(sockopts.wanted_options(settings))
                    },
                },
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": managed_name(gateway_name),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {"workloadSelector": {"labels": dict(selector)}, "configPatches": patches},
    }


def for_gateway(
    gateway: Gateway, targets: Iterable[PortTarget], settings: KeepaliveSettings
) -> dict[str, Any]:
    return render(
        gateway.namespace, gateway.name, gateway.selector, gateway.revision, targets, settings
    )


def is_managed(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE)


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts `enable` owns: labels it sets and the spec. Used for diffs and idempotency."""
    meta = obj.get("metadata") or {}
    labels = {
        k: v
        for k, v in (meta.get("labels") or {}).items()
        if k in (MANAGED_BY_LABEL, REVISION_LABEL)
    }
    return {"metadata": {"labels": labels}, "spec": copy.deepcopy(obj.get("spec") or {})}


def settings_in(obj: Mapping[str, Any]) -> dict[int, KeepaliveSettings | None]:
    """Per port, the keepalive a filter's LISTENER patches set (None: partial/off), read by
    the same reader as live listeners (`socket_options` and `tcp_keepalive` alike)."""
    found: dict[int, KeepaliveSettings | None] = {}
    for patch in _listener_patches(obj):
        port = _patch_port(patch)
        options = _patch_options(patch)
        tcp = _patch_tcp_keepalive(patch)
        if port is None or (not options and tcp is None):
            continue
        keepalive = sockopts.keepalive_of(options, tcp)
        if keepalive.enabled and None not in (keepalive.idle, keepalive.interval,
                                              keepalive.probes):
            found[port] = KeepaliveSettings(keepalive.idle or 0, keepalive.interval or 0,
                                            keepalive.probes or 0)
        else:
            found[port] = None
    return found


def predict_merge(
    live: Iterable[SocketOption], patches: Iterable[Iterable[SocketOption]]
) -> tuple[SocketOption, ...]:
    """Istio's MERGE on a repeated field appends: the listener gets every patch's options."""
    result = list(live)
    for options in patches:
        result.extend(options)
    return tuple(result)


@dataclass(frozen=True)
class ForeignFilter:
    namespace: str
    name: str
    ports: tuple[int | None, ...]  # None: the filter matches every port

    def __str__(self) -> str:
        ports = ", ".join("any" if p is None else str(p) for p in self.ports)
        return f"{self.namespace}/{self.name} (ports {ports})"


def foreign_keepalive_filters(
    filters: Iterable[Mapping[str, Any]],
    gateway: Gateway,
    ports: Iterable[int],
    root_namespace: str,
) -> list[ForeignFilter]:
    """Filters not managed here that set keepalive options on this gateway's chosen ports.

    A filter reaches a gateway from the root namespace or the gateway's own namespace, when its
    workloadSelector (if any) matches the gateway's pod labels and its revision label (if any)
    names a revision serving the gateway's pods.
    """
    wanted_ports = set(ports)
    pod_labels = gateway.pods[0].labels if gateway.pods else dict(gateway.selector)
    found = []
    for obj in filters:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace", ""))
        if is_managed(obj) or namespace not in (gateway.namespace, root_namespace):
            continue
        if skipped_for_revision(obj, gateway):
            continue
        selector = ((obj.get("spec") or {}).get("workloadSelector") or {}).get("labels") or {}
        if any(pod_labels.get(k) != v for k, v in selector.items()):
            continue
        hit_ports: list[int | None] = []
        for patch in _listener_patches(obj):
            match = patch.get("match")
            context = match.get("context", "ANY") if isinstance(match, Mapping) else "ANY"
            if context not in ("GATEWAY", "ANY"):
                continue
            options = _patch_options(patch)
            sets_options = any((o.level, o.name) in sockopts.KEEPALIVE_KEYS for o in options)
            if not sets_options and _patch_tcp_keepalive(patch) is None:
                continue
            port = _patch_port(patch)
            if port is None or port in wanted_ports:
                hit_ports.append(port)
        if hit_ports:
            found.append(ForeignFilter(namespace, str(meta.get("name", "")), tuple(hit_ports)))
    return sorted(found, key=lambda f: (f.namespace, f.name))


def serving_revisions(gateway: Gateway) -> set[str]:
    """The revisions whose istiod serves the gateway's pods ("default": the unrevisioned one)."""
    found = {p.injected_revision or p.labels.get(REVISION_LABEL) or "default"
             for p in gateway.pods}
    return found or {gateway.revision or "default"}


def skipped_for_revision(obj: Mapping[str, Any], gateway: Gateway) -> str | None:
    """The filter's `istio.io/rev` label when no istiod serving the gateway takes the filter
    (istiod compares the label with its own revision, never with a tag); else None."""
    revision = ((obj.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)
    if revision and revision not in serving_revisions(gateway):
        return str(revision)
    return None


def _listener_patches(obj: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for patch in (obj.get("spec") or {}).get("configPatches") or ():
        if isinstance(patch, Mapping) and patch.get("applyTo") == "LISTENER":
            operation = (patch.get("patch") or {}).get("operation")
            if operation in ("MERGE", "ADD", "REPLACE", None):
                yield patch


def _patch_port(patch: Mapping[str, Any]) -> int | None:
    match = patch.get("match")
    listener = match.get("listener") if isinstance(match, Mapping) else None
    if not isinstance(listener, Mapping):
        return None
    port = listener.get("portNumber") or listener.get("port_number")
    try:
        return int(port) if port else None
    except (TypeError, ValueError):  # not a port: the filter matches no listener by port
        return None


def _patch_value(patch: Mapping[str, Any]) -> Mapping[str, Any]:
    body = patch.get("patch")
    value = body.get("value") if isinstance(body, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _patch_options(patch: Mapping[str, Any]) -> list[SocketOption]:
    """The patch's socket options, through envoy_dump's reader; a malformed item is skipped
    (a foreign filter's mistake must not stop us reading the others)."""
    value = _patch_value(patch)
    raw = value.get("socket_options", value.get("socketOptions"))
    if not isinstance(raw, list):
        return []
    options: list[SocketOption] = []
    for item in raw:
        try:
            options.extend(envoy_dump.socket_options([item]))
        except UsageError:
            continue
    return options


def _patch_tcp_keepalive(patch: Mapping[str, Any]) -> TcpKeepalive | None:
    """Envoy >= 1.37 `tcp_keepalive` in the patch value; a malformed one counts as absent."""
    value = _patch_value(patch)
    try:
        return envoy_dump.tcp_keepalive(value.get("tcp_keepalive", value.get("tcpKeepalive")))
    except UsageError:
        return None
