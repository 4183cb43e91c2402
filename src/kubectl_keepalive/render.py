"""Reports as text: status tables, JSON/YAML documents, plan diffs. Pure: strings out."""

from __future__ import annotations

import difflib
import json
from typing import Any

from kubectl_keepalive import app, envoyfilter, sockopts
from kubectl_keepalive.model import Listener


def status_document(report: app.StatusReport) -> dict[str, Any]:
    """The `-o json|yaml` contract: gateways -> pods -> listeners (keys may grow, never shrink)."""
    gateways = []
    for gw in report.gateways:
        pods = []
        for pod in gw.pods:
            pods.append(
                {
                    "name": pod.pod.name if pod.pod else None,
                    "listeners": [_listener(lst, gw, pod) for lst in pod.listeners],
                    "error": pod.error,
                    "sockets_error": pod.sockets_error,
                    "note": pod.note,
                    "via": pod.via,
                }
            )
        managed = gw.managed_filter
        gateways.append(
            {
                "namespace": gw.gateway.namespace or None,
                "name": gw.gateway.name or None,
                "revision": gw.gateway.revision,
                "envoyfilter": (managed.get("metadata") or {}).get("name") if managed else None,
                "foreign_envoyfilters": [f"{f.namespace}/{f.name}" for f in gw.foreign],
                "pods": pods,
            }
        )
    return {"gateways": gateways}


def _connections(lst: Listener, pod: app.PodListeners) -> dict[str, int] | None:
    """Established connections on the listener's port and how many have keepalive timers."""
    if pod.connections is None or lst.protocol != "TCP" or lst.state.value != "active":
        return None
    seen = pod.connections.get(lst.port or 0)
    established, keepalive = (seen.established, seen.keepalive) if seen else (0, 0)
    return {"established": established, "keepalive": keepalive}


def _listener(lst: Listener, gw: app.GatewayStatus, pod: app.PodListeners) -> dict[str, Any]:
    keepalive = sockopts.listener_keepalive(lst)
    wanted = gw.managed_settings.get(lst.port) if lst.port is not None else None
    return {
        "name": lst.name,
        "port": lst.port,
        "protocol": lst.protocol,
        "state": lst.state.value,
        "static": lst.static,
        "keepalive": {
            "enabled": keepalive.enabled,
            "idle": keepalive.idle,
            "interval": keepalive.interval,
            "probes": keepalive.probes,
        },
        "duplicate_options": keepalive.duplicated,
        "sync": app.sync_state(lst, wanted),
        "error": lst.error,
        "connections": _connections(lst, pod),
    }


def _keepalive_cell(lst: Listener) -> str:
    keepalive = sockopts.listener_keepalive(lst)
    if not keepalive.enabled:
        return "off"

    def num(value: int | None, unit: str) -> str:
        return "-" if value is None else f"{value}{unit}"

    idle, interval = num(keepalive.idle, "s"), num(keepalive.interval, "s")
    text = f"on {idle}/{interval}/x{num(keepalive.probes, '')}"
    return text + " DUP" if keepalive.duplicated else text


def status_table(report: app.StatusReport, wide: bool) -> str:
    header = ["NAMESPACE", "GATEWAY", "POD", "LISTENER", "PORT", "PROTO", "STATE", "KEEPALIVE",
              "SYNC"]
    with_sockets = any(p.connections is not None or p.sockets_error
                       for g in report.gateways for p in g.pods)
    if with_sockets:
        header.append("CONNS(KA/ALL)")
    if wide:
        header += ["ENVOYFILTER", "DETAIL"]
    rows = [header]
    for gw in report.gateways:
        managed = gw.managed_filter
        filter_name = (managed.get("metadata") or {}).get("name") if managed else "<none>"
        for pod in gw.pods:
            pod_name = pod.pod.name if pod.pod else "-"
            if pod.error or pod.note:
                state = "unknown" if pod.error else "-"
                row = [gw.gateway.namespace or "-", gw.gateway.name or "-", pod_name, "-", "-",
                       "-", state, "-", "-"] + (["-"] if with_sockets else [])
                rows.append(row + ([str(filter_name), pod.error or pod.note or ""] if wide
                                   else []))
                continue
            for lst in pod.listeners:
                if lst.static and not wide:
                    continue  # bootstrap listeners (15021, 15090) are never patched
                wanted = gw.managed_settings.get(lst.port) if lst.port is not None else None
                state = lst.state.value + (" (static)" if lst.static else "")
                row = [gw.gateway.namespace or "-", gw.gateway.name or "-", pod_name, lst.name,
                       str(lst.port or "-"), lst.protocol, state, _keepalive_cell(lst),
                       app.sync_state(lst, wanted) or "-"]
                if with_sockets:
                    seen = _connections(lst, pod)
                    row.append(f"{seen['keepalive']}/{seen['established']}" if seen else "-")
                if wide:
                    row += [str(filter_name), lst.error or ""]
                rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    return "\n".join(lines) + "\n"


def status_notes(report: app.StatusReport) -> list[str]:
    """Lines for stderr: foreign filters and duplicates deserve a human's attention."""
    notes = list(report.notices)
    for gw in report.gateways:
        for pod in gw.pods:
            if pod.error and pod.pod:
                notes.append(f"pod {pod.pod.namespace}/{pod.pod.name}: {pod.error}")
            if pod.sockets_error and pod.pod:
                notes.append(f"pod {pod.pod.namespace}/{pod.pod.name}: sockets not read: "
                             f"{pod.sockets_error}")
        for foreign in gw.foreign:
            notes.append(
                f"gateway {gw.gateway.namespace}/{gw.gateway.name}: EnvoyFilter {foreign} also "
                "sets keepalive socket options"
            )
        skipped = gw.managed_filter and envoyfilter.skipped_for_revision(gw.managed_filter,
                                                                         gw.gateway)
        if skipped:
            served = ", ".join(sorted(envoyfilter.serving_revisions(gw.gateway)))
            notes.append(
                f"gateway {gw.gateway.namespace}/{gw.gateway.name}: its EnvoyFilter "
                f"{(gw.managed_filter or {}).get('metadata', {}).get('name')} is labelled "
                f"istio.io/rev={skipped}"
                f" but its pods are served by revision {served}, so no istiod applies it; "
                "`kubectl keepalive enable` relabels it"
            )
    return notes


def plan_text(plan: app.Plan, dump: Any, with_yaml: bool = True) -> str:
    """Readable diff per gateway and port, then a unified diff of the EnvoyFilter itself."""
    out: list[str] = []
    for gp in plan.gateways:
        gw = gp.gateway
        out.append(f"gateway {gw.namespace}/{gw.name} ({len(gw.pods)} pod(s))")
        name = envoyfilter.managed_name(gw.name)
        verb = {"create": "will be created", "update": "will be updated",
                "delete": "will be deleted", "none": "unchanged"}[gp.action]
        out.append(f"  envoyfilter {gw.namespace}/{name}: {verb}")
        for change in gp.ports:
            listener = f" ({change.listener_name})" if change.listener_name else ""
            out.append(f"  port {change.port}{listener}: {change.before} -> {change.after}")
        if gp.rollout_incomplete:
            out.append(f"  rollout not complete: {gp.rollout_incomplete}")
        if not gp.writes and not gp.live_matches:
            out.append("  live listeners do not show the filter yet: the gateway will be "
                       "restarted and verified")
        for pod in gp.unreadable_pods:
            out.append(f"  could not read pod {pod}")
        for foreign in gp.foreign:
            out.append(f"  foreign EnvoyFilter {foreign} also sets keepalive options")
        if gp.writes and with_yaml:
            before = dump(envoyfilter.comparable(gp.current)) if gp.current else ""
            after = dump(envoyfilter.comparable(gp.wanted)) if gp.wanted else ""
            diff = difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                f"live/{gw.namespace}/{name}", f"wanted/{gw.namespace}/{name}")
            out.extend("  " + line.rstrip("\n") for line in diff)
    return "\n".join(out) + "\n"


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


def to_yaml(document: Any) -> str:
    import yaml

    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


def yaml_stream(documents: list[Any]) -> str:
    return "---\n".join(to_yaml(d) for d in documents)
