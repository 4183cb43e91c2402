"""Gateway shapes the lab does not seed (tests/cluster/scenarios), through `kubectl keepalive`.

Each scenario is applied as its installer would leave it; its pods get real Envoys configured by
istiod. What the plugin says is checked against each Envoy's own admin (config_dump), read here
directly, never through the plugin's code.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.conftest import MANAGED, Lab, Scenario

pytestmark = pytest.mark.cluster

SO_KEEPALIVE = (1, 9)
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = (6, 4), (6, 5), (6, 6)

# Per scenario: (namespace, Deployment) -> the role the installer's labels give it.
ROLES: dict[str, dict[tuple[str, str], str]] = {
    "helm-gateway": {("shapes-helm", "edge-ingress"): "ingress"},
    "egress-eastwest": {("istio-system", "istio-egressgateway"): "egress",
                        ("istio-system", "istio-eastwestgateway"): "east-west"},
    "waypoint": {("shapes-ambient", "waypoint"): "waypoint"},
    "overlap": {("shapes-overlap", "ingress-a"): "ingress",
                ("shapes-overlap", "ingress-b"): "ingress"},
}
SEEDED_ROLES = {("istio-system", "istio-ingressgateway"): "ingress",
                ("istio-ingress", "istio-ingress"): "ingress",
                ("web", "web-gateway-istio"): "ingress"}


def status(lab: Lab, *args: str) -> dict[str, Any]:
    done = lab.keepalive("status", "-o", "json", *args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def envoy_keepalive(lab: Lab, namespace: str, pod: str) -> dict[int, dict[tuple[int, int], int]]:
    """Per port of each active dynamic TCP listener, the socket options Envoy itself holds
    ((level, name) -> value; later entries win, as Envoy applies them in order)."""
    address = lab.pod_address(namespace, pod)
    url = f"http://{address}:15000/config_dump?resource=dynamic_listeners"
    with urllib.request.urlopen(url, timeout=10) as resp:
        dump = json.loads(resp.read())
    out: dict[int, dict[tuple[int, int], int]] = {}
    for item in dump.get("configs", []):
        listener = (item.get("active_state") or {}).get("listener")
        if not listener:
            continue
        socket = listener.get("address", {}).get("socket_address", {})
        if socket.get("protocol", "TCP") != "TCP":
            continue  # a QUIC listener: TCP options do not belong there
        options: dict[tuple[int, int], int] = {}
        for opt in listener.get("socket_options", []):
            if "int_value" in opt:
                options[(int(opt.get("level", 0)), int(opt.get("name", 0)))] = int(
                    opt["int_value"])
        out[int(socket["port_value"])] = options
    return out


def keepalive_on(options: dict[tuple[int, int], int]) -> bool:
    return options.get(SO_KEEPALIVE) == 1


def pods_of(lab: Lab, namespace: str, selector: str) -> list[str]:
    items = lab.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return sorted(i["metadata"]["name"] for i in items
                  if not i["metadata"].get("deletionTimestamp"))


def replicasets(lab: Lab, namespace: str, deployment: str) -> set[str]:
    items = lab.get_json("replicasets", "-n", namespace)["items"]
    return {i["metadata"]["name"] for i in items
            if any(o["name"] == deployment for o in i["metadata"].get("ownerReferences", []))}


def managed_filters(lab: Lab, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = lab.get_json(
        "envoyfilters.networking.istio.io", "-n", namespace, "-l", MANAGED)["items"]
    return items


def reaches(envoy_filter: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    """Whether a filter's workloadSelector takes a pod with these labels (Istio's rule: every
    selector label present with the same value; no selector takes every pod)."""
    wanted = (envoy_filter["spec"].get("workloadSelector") or {}).get("labels") or {}
    return all(pod_labels.get(k) == v for k, v in wanted.items())


@pytest.mark.parametrize("name", sorted(ROLES))
def test_status_gives_each_proxy_its_role(
        lab: Lab, scenario: Callable[[str], Scenario], name: str) -> None:
    scenario(name)
    found = {(g["namespace"], g["name"]): g for g in status(lab, "-A")["gateways"]}
    for key, role in {**ROLES[name], **SEEDED_ROLES}.items():
        assert key in found, f"{key} not listed: {sorted(found)}"
        assert found[key].get("role") == role, (key, found[key].get("role"))


def test_enable_patches_exactly_the_unseeded_gateways_tcp_ports_on_both_pods(
        clean: Lab, scenario: Callable[[str], Scenario]) -> None:
    lab = clean
    scenario("helm-gateway")
    ns = "shapes-helm"
    done = lab.keepalive("enable", "-y", "-n", ns)
    assert done.returncode == 0, done.stderr
    (written,) = managed_filters(lab, ns)
    patched = {p["match"]["listener"]["portNumber"] for p in written["spec"]["configPatches"]}
    assert patched == {8081, 9443}
    pods = pods_of(lab, ns, "app=edge-ingress")
    assert len(pods) == 2
    # The plugin's own reading: both pods, exactly the two TCP ports, keepalive on.
    (gateway,) = [g for g in status(lab, "-n", ns)["gateways"] if g["name"] == "edge-ingress"]
    assert sorted(p["name"] for p in gateway["pods"]) == pods
    for pod in gateway["pods"]:
        dynamic = {lst["port"]: lst["keepalive"] for lst in pod["listeners"]
                   if lst["state"] == "active" and not lst["static"] and lst["protocol"] == "TCP"}
        assert set(dynamic) == {8081, 9443}, pod["name"]
        assert all(ka["enabled"] for ka in dynamic.values()), dynamic
    # Each Envoy's own config: the options are live there, on those ports and no others.
    for pod_name in pods:
        live = envoy_keepalive(lab, ns, pod_name)
        assert set(live) == {8081, 9443}, (pod_name, live)
        for port, options in live.items():
            assert keepalive_on(options), (pod_name, port, options)
            assert options.get(TCP_KEEPIDLE, 0) > 0 and options.get(TCP_KEEPCNT, 0) > 0


def test_diff_is_in_sync_after_a_balancer_aware_enable(
        clean: Lab, scenario: Callable[[str], Scenario]) -> None:
    lab = clean
    scenario("helm-gateway")
    ns = "shapes-helm"
    # No --idle: enable picks its settings from the NLB's 60 s idle timeout.
    done = lab.keepalive("enable", "-y", "-n", ns)
    assert done.returncode == 0, done.stderr
    (pod, *_) = pods_of(lab, ns, "app=edge-ingress")
    options = envoy_keepalive(lab, ns, pod)[8081]
    assert keepalive_on(options) and options[TCP_KEEPIDLE] < 60, options
    again = lab.keepalive("diff", "-n", ns)
    assert again.returncode == 0, again.stdout + again.stderr


def test_enable_in_the_root_namespace_leaves_egress_and_east_west_alone(
        clean: Lab, scenario: Callable[[str], Scenario]) -> None:
    lab = clean
    scenario("egress-eastwest")
    ns = "istio-system"
    others = {"istio-egressgateway": "istio=egressgateway",
              "istio-eastwestgateway": "istio=eastwestgateway"}
    before = {name: (replicasets(lab, ns, name), pods_of(lab, ns, sel))
              for name, sel in others.items()}
    done = lab.keepalive("enable", "-y", "-n", ns, timeout=600)
    assert done.returncode == 0, done.stderr
    filters = managed_filters(lab, ns)
    assert filters, "the seeded ingress gateways in istio-system get their filter"
    for name, selector in others.items():
        assert (replicasets(lab, ns, name), pods_of(lab, ns, selector)) == before[name], name
        for pod in lab.get_json("pods", "-n", ns, "-l", selector)["items"]:
            labels = pod["metadata"].get("labels") or {}
            assert not [f["metadata"]["name"] for f in filters if reaches(f, labels)], name
            live = envoy_keepalive(lab, ns, pod["metadata"]["name"])
            assert live and not any(keepalive_on(o) for o in live.values()), (name, live)


def test_overlapping_selectors_reach_only_their_own_gateway_or_are_refused(
        clean: Lab, scenario: Callable[[str], Scenario]) -> None:
    lab = clean
    scenario("overlap")
    ns = "shapes-overlap"
    # ingress-a's Deployment selects on `istio=ingress` alone, which ingress-b's pods carry too.
    done = lab.keepalive("enable", "-y", "-n", ns, "-l", "app=ingress-a")
    if done.returncode == 3:
        assert "ingress-a" in done.stderr and "ingress-b" in done.stderr, done.stderr
        assert managed_filters(lab, ns) == []
        return
    assert done.returncode == 0, done.stderr
    filters = managed_filters(lab, ns)
    assert filters
    seen: dict[str, bool] = {}
    for pod in lab.get_json("pods", "-n", ns)["items"]:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        app = meta["labels"]["app"]
        live = envoy_keepalive(lab, ns, meta["name"])
        seen[meta["name"]] = keepalive_on(live[80])
        assert seen[meta["name"]] == (app == "ingress-a"), (meta["name"], live)
        assert any(reaches(f, meta["labels"]) for f in filters) == (app == "ingress-a")
    assert sorted(seen.values()) == [False, True], seen


def test_enable_leaves_a_waypoint_alone(
        clean: Lab, scenario: Callable[[str], Scenario]) -> None:
    lab = clean
    scenario("waypoint")
    ns = "shapes-ambient"
    before = replicasets(lab, ns, "waypoint")
    done = lab.keepalive("enable", "-y", "-n", ns)
    # Nothing to act on: either "nothing to do" or a refusal that names the waypoint it skipped.
    assert done.returncode in (0, 3), done.stderr
    if done.returncode == 3:
        assert "waypoint" in done.stderr and "shapes-ambient/waypoint" in done.stderr
    assert managed_filters(lab, ns) == []
    assert replicasets(lab, ns, "waypoint") == before
