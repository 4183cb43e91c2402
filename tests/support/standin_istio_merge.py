"""STAND-IN for istiod's LISTENER MERGE, for the tiers that run Envoy without a cluster.

Not Istio: it appends each patch's `socket_options` to the listener, which is what Istio's MERGE
does to a repeated field. The envoy and netns tiers use it to feed a plugin-rendered filter to a
file-configured Envoy; the cluster tier (tests/cluster/test_istiod.py, test_incident.py) checks
the real translation by the real istiod, with no stand-in in the path.
"""

from __future__ import annotations

from typing import Any


def merge_listener_patches(
    listener: dict[str, Any], envoy_filter: dict[str, Any]
) -> dict[str, Any]:
    port = listener["address"]["socket_address"]["port_value"]
    merged = dict(listener)
    for patch in envoy_filter["spec"]["configPatches"]:
        match = patch["match"].get("listener", {})
        if patch["applyTo"] != "LISTENER" or patch["patch"]["operation"] != "MERGE":
            continue
        if match.get("portNumber") not in (None, port):
            continue
        if match.get("name") not in (None, listener["name"]):
            continue
        merged["socket_options"] = (list(merged.get("socket_options", []))
                                    + list(patch["patch"]["value"].get("socket_options", [])))
    return merged
