"""The plugin end to end on the lab cluster: real API server, real controllers, real Envoys."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.cluster.conftest import Lab

pytestmark = pytest.mark.cluster

NS = "istio-system"
GW = "istio-ingressgateway"
FILTER = f"keepalive-{GW}"
FAST = ["--idle", "7s", "--interval", "5s", "--probes", "2"]


def status(lab: Lab, *args: str) -> dict[str, Any]:
    done = lab.keepalive("status", "-o", "json", *args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def keepalive_of(lab: Lab, namespace: str, gateway: str) -> dict[int, list[dict[str, Any]]]:
    """Per port, the keepalive each pod's active TCP listener shows."""
    by_port: dict[int, list[dict[str, Any]]] = {}
    for gw in status(lab, "-n", namespace)["gateways"]:
        if gw["name"] != gateway:
            continue
        for pod in gw["pods"]:
            for lst in pod["listeners"]:
                if lst["state"] == "active" and not lst["static"] and lst["protocol"] == "TCP":
                    by_port.setdefault(lst["port"], []).append(lst["keepalive"])
    return by_port


def replicasets(lab: Lab, namespace: str, gateway: str) -> set[str]:
    items = lab.get_json("replicasets", "-n", namespace)["items"]
    return {i["metadata"]["name"] for i in items
            if any(o["name"] == gateway for o in i["metadata"].get("ownerReferences", []))}


def pod_names(lab: Lab, namespace: str, selector: str) -> set[str]:
    items = lab.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return {i["metadata"]["name"] for i in items}


def envoyfilter(lab: Lab, namespace: str, name: str) -> dict[str, Any] | None:
    done = lab.kubectl("get", "envoyfilters.networking.istio.io", name, "-n", namespace, "-o",
                       "json", "--show-managed-fields", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_status_finds_every_seeded_install_style(lab: Lab) -> None:
    found = {(g["namespace"], g["name"]): g for g in status(lab, "-A")["gateways"]}
    assert {
        ("istio-system", "istio-ingressgateway"),
        ("istio-ingress", "istio-ingress"),
        ("web", "web-gateway-istio"),
        ("istio-canary", "istio-ingressgateway-canary"),
        ("istio-system", "istio-internalgateway"),
    } <= set(found)
    ports = {key: {lst["port"] for p in g["pods"] for lst in p["listeners"] if not lst["static"]}
             for key, g in found.items()}
    assert ports[("istio-system", "istio-ingressgateway")] == {8080, 8443}
    assert ports[("istio-ingress", "istio-ingress")] >= {80, 443}
    assert ports[("web", "web-gateway-istio")] == {80}
    assert found[("istio-canary", "istio-ingressgateway-canary")]["revision"] == "canary"
    assert len(found[("istio-system", "istio-internalgateway")]["pods"]) == 3
    for gw in found.values():
        for pod in gw["pods"]:
            assert pod["error"] is None and pod["via"] == "port-forward"


def test_enable_rolls_verifies_and_is_idempotent(clean: Lab) -> None:
    lab = clean
    assert lab.keepalive("diff", "-n", NS, "-l", "app=istio-ingressgateway", *FAST
                         ).returncode == 1
    before_rs = replicasets(lab, NS, GW)
    before_pods = pod_names(lab, NS, "app=istio-ingressgateway")
    done = lab.keepalive("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST)
    assert done.returncode == 0, done.stderr
    assert f"envoyfilter {NS}/{FILTER} created" in done.stdout
    assert "verified: gateway istio-system/istio-ingressgateway" in done.stdout
    # Accepted by the real API server against Istio's real CRD schema, written by our manager.
    written = envoyfilter(lab, NS, FILTER)
    assert written is not None
    assert written["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubectl-keepalive"
    managers = {m["manager"] for m in written["metadata"]["managedFields"]}
    assert managers == {"kubectl-keepalive"}
    # A real rollout: a new ReplicaSet, the old pods gone.
    after_rs = replicasets(lab, NS, GW)
    assert len(after_rs - before_rs) == 1
    assert not (pod_names(lab, NS, "app=istio-ingressgateway") & before_pods)
    assert keepalive_of(lab, NS, GW) == {
        p: [{"enabled": True, "idle": 7, "interval": 5, "probes": 2}] for p in (8080, 8443)}
    # Again with the same settings: nothing written, no new ReplicaSet; diff says in sync.
    version = written["metadata"]["resourceVersion"]
    again = lab.keepalive("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert envoyfilter(lab, NS, FILTER)["metadata"]["resourceVersion"] == version  # type: ignore[index]
    assert replicasets(lab, NS, GW) == after_rs
    assert lab.keepalive("diff", "-n", NS, "-l", "app=istio-ingressgateway", *FAST
                         ).returncode == 0


def test_disable_removes_only_the_managed_filter(clean: Lab) -> None:
    lab = clean
    other = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
             "metadata": {"name": "unrelated-test", "namespace": NS,
                          "labels": {"keepalive-test": "true"}},
             "spec": {"workloadSelector": {"labels": {"app": "istio-ingressgateway"}},
                      "configPatches": []}}
    lab.apply(other)
    assert lab.keepalive("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST
                         ).returncode == 0
    done = lab.keepalive("disable", "-y", "-n", NS, "-l", "app=istio-ingressgateway")
    assert done.returncode == 0, done.stderr
    assert envoyfilter(lab, NS, FILTER) is None
    assert envoyfilter(lab, NS, "unrelated-test") is not None
    assert all(not ka["enabled"] for kas in keepalive_of(lab, NS, GW).values() for ka in kas)


HAND_MADE = {
    "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
    "metadata": {"name": "ingress-keepalive", "namespace": NS,
                 "labels": {"keepalive-test": "true"}},
    "spec": {
        "workloadSelector": {"labels": {"istio": "ingressgateway"}},
        "configPatches": [{
            "applyTo": "LISTENER",
            "match": {"context": "GATEWAY", "listener": {"portNumber": 8080}},
            "patch": {"operation": "MERGE", "value": {"socket_options": [
                {"level": 1, "name": 9, "int_value": 1, "state": "STATE_PREBIND"},
                {"level": 6, "name": 4, "int_value": 300, "state": "STATE_PREBIND"},
            ]}},
        }],
    },
}


def test_a_hand_made_keepalive_filter_blocks_enable_until_forced(clean: Lab) -> None:
    lab = clean
    lab.apply(HAND_MADE)
    refused = lab.keepalive("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST)
    assert refused.returncode == 3
    assert "istio-system/ingress-keepalive" in refused.stderr
    assert envoyfilter(lab, NS, FILTER) is None
    forced = lab.keepalive("enable", "-y", "--force", "-n", NS, "-l",
                           "app=istio-ingressgateway", *FAST)
    assert forced.returncode == 0, forced.stderr
    assert envoyfilter(lab, NS, FILTER) is not None


def test_server_dry_run_writes_nothing(clean: Lab) -> None:
    lab = clean
    before = replicasets(lab, NS, GW)
    done = lab.keepalive("enable", "-y", "--dry-run=server", "-n", NS, "-l",
                         "app=istio-ingressgateway", *FAST)
    assert done.returncode == 0, done.stderr
    assert "(server dry run)" in done.stdout
    assert envoyfilter(lab, NS, FILTER) is None
    assert replicasets(lab, NS, GW) == before


def test_paused_deployment_is_refused_and_nothing_changes(clean: Lab) -> None:
    lab = clean
    lab.kubectl("rollout", "pause", f"deployment/{GW}", "-n", NS)
    done = lab.keepalive("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST)
    assert done.returncode == 3
    assert "paused" in done.stderr.strip().splitlines()[-1]
    assert envoyfilter(lab, NS, FILTER) is None


def test_a_rollout_that_never_becomes_available_then_a_rerun_finishes(clean: Lab) -> None:
    lab = clean
    # New pods can land on no node: the rollout the plugin starts cannot finish.
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"keepalive-test": "nowhere"}}}}}
    lab.kubectl("patch", "deployment", GW, "-n", NS, "--type=merge", "-p", json.dumps(patch))
    stuck = lab.keepalive("enable", "-y", "--timeout", "15s", "-n", NS, "-l",
                          "app=istio-ingressgateway", *FAST)
    assert stuck.returncode == 3, stuck.stderr
    last = stuck.stderr.strip().splitlines()[-1]
    assert last.startswith("error: timed out")
    assert f"envoyfilter {NS}/{FILTER} created" in last and "re-run" in last
    assert envoyfilter(lab, NS, FILTER) is not None
    undo = {"spec": {"template": {"spec": {"nodeSelector": None}}}}
    lab.kubectl("patch", "deployment", GW, "-n", NS, "--type=merge", "-p", json.dumps(undo))
    rerun = lab.keepalive("enable", "-y", "--timeout", "120s", "-n", NS, "-l",
                          "app=istio-ingressgateway", *FAST)
    assert rerun.returncode == 0, rerun.stderr
    assert keepalive_of(lab, NS, GW)[8080] == [
        {"enabled": True, "idle": 7, "interval": 5, "probes": 2}]


def test_two_concurrent_enables_converge_on_one_filter(clean: Lab) -> None:
    lab = clean
    args = ("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: lab.keepalive(*args), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    filters = lab.get_json("envoyfilters.networking.istio.io", "-n", NS, "-l",
                           "app.kubernetes.io/managed-by=kubectl-keepalive")["items"]
    assert [f["metadata"]["name"] for f in filters] == [FILTER]
    for gw in status(lab, "-n", NS)["gateways"]:
        for pod in gw["pods"]:
            assert not any(lst["duplicate_options"] for lst in pod["listeners"])


def test_revisioned_gateway_gets_the_revision_label(clean: Lab) -> None:
    lab = clean
    done = lab.keepalive("enable", "-y", "-n", "istio-canary", *FAST)
    assert done.returncode == 0, done.stderr
    written = envoyfilter(lab, "istio-canary", "keepalive-istio-ingressgateway-canary")
    assert written is not None and written["metadata"]["labels"]["istio.io/rev"] == "canary"


def test_unknown_context_is_a_usage_error_and_nothing_is_contacted(lab: Lab) -> None:
    done = lab.keepalive("status", "--context", "does-not-exist")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == 'error: context "does-not-exist" does not exist\n'


def test_status_sockets_counts_kernel_keepalive_timers(clean: Lab) -> None:
    import socket
    import time

    lab = clean

    def address() -> str:
        (pod,) = pod_names(lab, NS, "app=istio-ingressgateway")
        return lab.pod_address(NS, pod)

    def on_8080() -> dict[str, int]:
        document = status(lab, "-n", NS, "-l", "app=istio-ingressgateway", "--sockets")
        (pod,) = document["gateways"][0]["pods"]
        (listener,) = [lst for lst in pod["listeners"]
                       if lst["port"] == 8080 and lst["state"] == "active"]
        counted: dict[str, int] = listener["connections"]
        return counted

    before = socket.create_connection((address(), 8080), timeout=5)
    try:
        time.sleep(0.5)
        seen = on_8080()
        assert seen["established"] >= 1 and seen["keepalive"] == 0, seen
    finally:
        before.close()
    assert lab.keepalive("enable", "-y", "-n", NS, "-l", "app=istio-ingressgateway", *FAST
                         ).returncode == 0
    after = socket.create_connection((address(), 8080), timeout=5)
    try:
        time.sleep(0.5)
        seen = on_8080()
        assert seen["keepalive"] >= 1, seen
    finally:
        after.close()
