"""Reports as text: status tables, JSON/YAML documents, plan diffs. Pure: strings out.

Every name and message that came from the cluster or a config dump (namespaces, pods, listener
names, errors, notes) is shown through `terminal.safe`: escaped and cut, one line each. The
JSON and YAML documents keep the data as it is; their encoders escape control characters.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from kubectl_keepalive.envoy import sockopts
from kubectl_keepalive.istio import envoyfilter
from kubectl_keepalive.model import Keepalive, Listener
from kubectl_keepalive.terminal import CUT, safe
from kubectl_keepalive.usecases import app

SENTENCE_CUT = 1000  # a note or error: the plugin's words around pieces already cut


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
                # A config file read offline has no gateway, so no role either.
                "role": gw.gateway.role if gw.gateway.name else None,
                "proxy": gw.gateway.proxy if gw.gateway.name else None,
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
    found = {"established": established, "keepalive": keepalive}
    if seen and seen.without_keepalive and sockopts.listener_keepalive(lst).enabled:
        # The listener has keepalive, these sockets have none: accepted before the change.
        found["before_change"] = seen.without_keepalive
    return found


def _listener(lst: Listener, gw: app.GatewayStatus, pod: app.PodListeners) -> dict[str, Any]:
    keepalive = sockopts.listener_keepalive(lst)
    wanted = gw.managed_settings.get(lst.port) if lst.port is not None else None
    return {
        "name": lst.name,
        "port": lst.port,
        "protocol": lst.protocol,
        "state": lst.state.value,
        "static": lst.static,
        "keepalive": _keepalive_fields(keepalive),
        "duplicate_options": keepalive.duplicated,
        # What set it (tcp_keepalive, socket_options), and the timers the kernel's sysctls
        # fill in (defaults shown; a pod's own sysctls may differ).
        "keepalive_from": list(keepalive.sources),
        "kernel_defaults": {name: getattr(sockopts.KERNEL_DEFAULTS, name)
                            for name in keepalive.kernel_fields} or None,
        "additional_addresses": [
            {"address": extra.address, "port": extra.port,
             "keepalive": _keepalive_fields(sockopts.address_keepalive(lst, extra))}
            for extra in lst.additional_addresses],
        "notes": sockopts.listener_notes(lst),
        "sync": app.sync_state(lst, wanted),
        "error": lst.error,
        "connections": _connections(lst, pod),
    }


def _keepalive_fields(keepalive: Keepalive) -> dict[str, Any]:
    return {"enabled": keepalive.enabled, "idle": keepalive.idle,
            "interval": keepalive.interval, "probes": keepalive.probes}


def _keepalive_cell(lst: Listener) -> str:
    keepalive = sockopts.listener_keepalive(lst)
    text = sockopts.describe_keepalive(keepalive)
    if lst.additional_addresses:
        text += f" +{len(lst.additional_addresses)} addr"
    return text + " DUP" if keepalive.duplicated else text


def status_table(report: app.StatusReport, wide: bool, no_headers: bool = False) -> str:
    header = ["NAMESPACE", "GATEWAY", "POD", "LISTENER", "PORT", "PROTO", "STATE", "KEEPALIVE",
              "SYNC"]
    with_sockets = any(p.connections is not None or p.sockets_error
                       for g in report.gateways for p in g.pods)
    if with_sockets:
        header.append("CONNS(KA/ALL)")
    if wide:
        header += ["ROLE", "ENVOYFILTER", "DETAIL"]
    rows = [header]
    for gw in report.gateways:
        managed = gw.managed_filter
        filter_name = (managed.get("metadata") or {}).get("name") if managed else "<none>"
        role = gw.gateway.role if gw.gateway.name else "-"
        for pod in gw.pods:
            pod_name = pod.pod.name if pod.pod else "-"
            if pod.error or pod.note:
                state = "unknown" if pod.error else "-"
                row = [gw.gateway.namespace or "-", gw.gateway.name or "-", pod_name, "-", "-",
                       "-", state, "-", "-"] + (["-"] if with_sockets else [])
                rows.append(row + ([role, str(filter_name), pod.error or pod.note or ""]
                                   if wide else []))
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
                    cell = f"{seen['keepalive']}/{seen['established']}" if seen else "-"
                    if seen and seen.get("before_change"):
                        cell += f" ({seen['before_change']} before change)"
                    row.append(cell)
                if wide:
                    row += [role, str(filter_name), lst.error or ""]
                rows.append(row)
    # One name per cell; the wide DETAIL column holds a whole error or note.
    limits = [SENTENCE_CUT if wide and i == len(header) - 1 else CUT
              for i in range(len(header))]
    rows = [[safe(cell, limit) for cell, limit in zip(row, limits)] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
             for r in rows[1 if no_headers else 0:]]
    return "\n".join(lines) + "\n"


def status_notes(report: app.StatusReport) -> list[str]:
    """Lines for stderr: foreign filters and duplicates deserve a human's attention."""
    return [safe(note, SENTENCE_CUT) for note in _status_notes(report)]


def _status_notes(report: app.StatusReport) -> list[str]:
    notes = list(report.notices)
    for gw in report.gateways:
        for pod in gw.pods:
            if pod.error and pod.pod:
                notes.append(f"pod {_name(pod.pod)}: {safe(pod.error, SENTENCE_CUT)}")
            if pod.sockets_error and pod.pod:
                notes.append(f"pod {_name(pod.pod)}: sockets not read: "
                             f"{safe(pod.sockets_error, SENTENCE_CUT)}")
        seen: set[str] = set()
        for pod in gw.pods:
            for lst in pod.listeners:
                for note in sockopts.listener_notes(lst):
                    line = (f"listener {safe(lst.name)} ({lst.state.value}): "
                            f"{safe(note, SENTENCE_CUT)}")
                    if line not in seen:  # every pod of a gateway usually says the same
                        seen.add(line)
                        owner = f"gateway {_name(gw.gateway)}: " if gw.gateway.name else ""
                        notes.append(owner + line)
        for foreign in gw.foreign:
            notes.append(
                f"gateway {_name(gw.gateway)}: EnvoyFilter {safe(str(foreign))} also "
                "sets keepalive socket options"
            )
        skipped = gw.managed_filter and envoyfilter.skipped_for_revision(gw.managed_filter,
                                                                         gw.gateway)
        if skipped:
            served = safe(", ".join(sorted(envoyfilter.serving_revisions(gw.gateway))))
            notes.append(
                f"gateway {_name(gw.gateway)}: its EnvoyFilter "
                f"{safe(str((gw.managed_filter or {}).get('metadata', {}).get('name')))} is "
                f"labelled istio.io/rev={safe(str(skipped))}"
                f" but its pods are served by revision {served}, so no istiod applies it; "
                "`kubectl keepalive enable` relabels it"
            )
    return notes


def _name(thing: Any) -> str:
    """namespace/name of a pod or gateway as read from the cluster, safe to show."""
    return f"{safe(thing.namespace)}/{safe(thing.name)}"


def plan_text(plan: app.Plan, dump: Any, with_yaml: bool = True,
              verbose: bool = False) -> str:
    """Readable diff per gateway and port, then a unified diff of the EnvoyFilter itself."""
    out: list[str] = []
    for gp in plan.gateways:
        gw = gp.gateway
        out.append(f"gateway {_name(gw)} ({_count(len(gw.pods), 'pod')})")
        name = safe(envoyfilter.managed_name(gw.name))
        verb = {"create": "will be created", "update": "will be updated",
                "delete": "will be deleted", "none": "unchanged"}[gp.action]
        out.append(f"  envoyfilter {safe(gw.namespace)}/{name}: {verb}")
        for change in gp.ports:
            listener = f" ({safe(change.listener_name)})" if change.listener_name else ""
            out.append(f"  port {change.port}{listener}: {safe(str(change.before))} -> "
                       f"{safe(str(change.after))}")
        out.extend(_drain_lines(gp, verbose))
        if gp.rollout_incomplete:
            out.append(f"  rollout not complete: {safe(gp.rollout_incomplete, SENTENCE_CUT)}")
        if not gp.writes and not gp.live_matches:
            out.append("  live listeners do not show the filter yet: the gateway will be "
                       "restarted and verified")
        for pod in gp.unreadable_pods:
            # Cut to the terminal; -v shows the whole error.
            line = f"  could not read pod {safe(str(pod), SENTENCE_CUT)}"
            out.append(line if verbose else _fit(line))
        for foreign in gp.foreign:
            out.append(f"  foreign EnvoyFilter {safe(str(foreign))} also sets keepalive options")
        if gp.writes and with_yaml:
            # One key order for both sides, as `kubectl diff` has: the live object comes in
            # the API server's order, the wanted one in ours, and only values may differ.
            before = dump(keys_sorted(envoyfilter.comparable(gp.current))) if gp.current else ""
            after = dump(keys_sorted(envoyfilter.comparable(gp.wanted))) if gp.wanted else ""
            diff = difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                f"live/{safe(gw.namespace)}/{name}", f"wanted/{safe(gw.namespace)}/{name}")
            out.extend("  " + safe(line.rstrip("\n"), SENTENCE_CUT) for line in diff)
    return "\n".join(out) + "\n"


def keys_sorted(value: Any) -> Any:
    """`value` with every mapping's keys in sorted order, lists kept in theirs."""
    if isinstance(value, dict):
        return {key: keys_sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [keys_sorted(item) for item in value]
    return value


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _drain_lines(gp: app.GatewayPlan, verbose: bool = False) -> list[str]:
    """What is in flight, said once per gateway and only as much as matters: nothing in flight
    in a few words; otherwise the counts per port and when the push and the rollout cut them.
    Where each timing came from: with -v (and always in `-o json`)."""
    drain = gp.drain
    if drain is None:
        return []
    out = []
    lower = "" if drain.counted else "at least "
    busy = []
    for port in drain.ports:
        load = drain.load(port)
        what = []
        if load.requests:
            what.append(_count(load.requests, "request"))
        if load.tcp_connections:
            what.append(_count(load.tcp_connections, "passthrough connection"))
        if what:
            busy.append(f"{' and '.join(what)} on port {port}")
    cuts = []
    if gp.writes and drain.drain is not None:
        cuts.append(f"within {drain.drain.seconds:g}s by the push")
    if gp.needs_restart and drain.pod_end is not None:
        cuts.append(f"{drain.pod_end.seconds:g}s into the rollout")
    if busy:
        cut = f"; cut {', '.join(cuts)}" if cuts else ""
        out.append(f"  in flight: {lower}{', '.join(busy)}{cut}")
    else:
        idle = sum(drain.load(port).connections for port in drain.ports)
        out.append(f"  in flight: {'nothing counted' if lower else 'nothing'}"
                   + (f" ({_count(idle, 'idle connection')})" if idle else ""))
    out.extend(_fit(f"  in flight unknown on pod {safe(str(p.pod))}: {safe(p.error, WIDTH)}")
               for p in drain.pods if p.error)
    if verbose:
        if gp.writes and drain.drain is not None:
            out.append(f"  push drain {drain.drain.seconds:g}s: {safe(drain.drain.source)}")
        if gp.needs_restart and drain.pod_end is not None:
            out.append(f"  old pods end {drain.pod_end.seconds:g}s into the rollout: "
                       f"{safe(drain.pod_end.source)}")
    # A timing's input that could not be read, or was absent, matters without -v too.
    for note in drain.notes:
        line = f"  note: {safe(note, SENTENCE_CUT)}"
        out.append(line if verbose else _fit(line))
    return out


WIDTH = 100  # a terminal's columns: plan lines quoting the cluster are cut to fit


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."


def plan_document(plan: app.Plan) -> dict[str, Any]:
    """`diff -o json|yaml`: the plan with what is in flight and when it is cut, as data."""
    def timing(value: Any) -> dict[str, Any] | None:
        return None if value is None else {"seconds": value.seconds, "source": value.source}

    gateways = []
    for gp in plan.gateways:
        drain = gp.drain
        ports = []
        for change in gp.ports:
            entry: dict[str, Any] = {"port": change.port, "listener": change.listener_name,
                                     "before": change.before, "after": change.after}
            if drain is not None and change.port in drain.ports:
                load = drain.load(change.port)
                entry["in_flight"] = {"connections": load.connections,
                                      "requests": load.requests,
                                      "tcp_connections": load.tcp_connections,
                                      "complete": drain.counted}
            ports.append(entry)
        doc: dict[str, Any] = {
            "namespace": gp.gateway.namespace, "name": gp.gateway.name,
            "envoyfilter": envoyfilter.managed_name(gp.gateway.name), "action": gp.action,
            "restart": gp.needs_restart, "ports": ports}
        if drain is not None:
            doc["push_drain"] = timing(drain.drain) if gp.writes else None
            doc["rollout_pod_end"] = timing(drain.pod_end)
            doc["pods"] = [{"name": p.pod, "error": p.error,
                            "drain": timing(p.timings.drain),
                            "termination_drain": timing(p.timings.termination_drain),
                            "grace": timing(p.timings.grace)} for p in drain.pods]
            doc["notes"] = list(drain.notes)
        gateways.append(doc)
    return {"changes": plan.changes, "gateways": gateways, "notices": list(plan.notices)}


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


def to_yaml(document: Any) -> str:
    import yaml

    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


def yaml_stream(documents: list[Any]) -> str:
    return "---\n".join(to_yaml(d) for d in documents)
