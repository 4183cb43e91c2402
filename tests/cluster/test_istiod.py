"""The plugin's EnvoyFilter reaches each gateway's Envoy only through the real istiod.

Every Envoy here takes its listeners from istiod over ADS (lab/pod_wiring.py). These tests read
each pod's Envoy admin directly, not through the plugin, so a mistake shared by the plugin's
writer and its reader (port, context, selector, namespace, revision) cannot hide.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Lab, labctl

pytestmark = pytest.mark.cluster

FAST = ["--idle", "7s", "--interval", "5s", "--probes", "2"]
# The four options of the recipe, as Envoy shows them (SOL_SOCKET/SO_KEEPALIVE, IPPROTO_TCP/...).
WANTED = [(1, 9, 1), (6, 4, 7), (6, 5, 5), (6, 6, 2)]
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"

# (namespace, Deployment, pod selector, the TCP ports istiod gives its Envoy)
STYLES = {
    "istiooperator-8080-8443": ("istio-system", "istio-ingressgateway",
                                "app=istio-ingressgateway", (8080, 8443)),
    "helm-80-443": ("istio-ingress", "istio-ingress", "app=istio-ingress", (80, 443)),
    "gateway-api": ("web", "web-gateway-istio",
                    "gateway.networking.k8s.io/gateway-name=web-gateway", (80,)),
    "revision-canary": ("istio-canary", "istio-ingressgateway-canary",
                        "app=istio-ingressgateway-canary", (8080, 8443)),
}


def admin_get(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}:15000/{path}", timeout=10) as reply:
        return json.loads(reply.read())


def dynamic_listeners(address: str) -> dict[str, dict[str, Any]]:
    """name -> the dynamic listener entry (version_info, active/warming/error states)."""
    dump = admin_get(address, "config_dump?resource=dynamic_listeners")
    return {entry["name"]: entry for entry in dump.get("configs", [])}


def options_of(entry: dict[str, Any]) -> list[tuple[int, int, int]]:
    listener = (entry.get("active_state") or {}).get("listener") or {}
    return [(int(o.get("level", 0)), int(o.get("name", 0)), int(o.get("int_value", 0)))
            for o in listener.get("socket_options", [])]


def running_pods(lab: Lab, namespace: str, selector: str) -> list[str]:
    items = lab.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return sorted(i["metadata"]["name"] for i in items
                  if not i["metadata"].get("deletionTimestamp"))


def envoys_of(lab: Lab, namespace: str, selector: str) -> dict[str, dict[str, dict[str, Any]]]:
    """pod -> its Envoy's dynamic listeners, for every current pod of one gateway."""
    return {pod: dynamic_listeners(lab.pod_address(namespace, pod))
            for pod in running_pods(lab, namespace, selector)}


def every_envoy(lab: Lab, timeout: float = 30.0) -> dict[str, dict[str, dict[str, Any]]]:
    """namespace/pod -> dynamic listeners, for every running gateway pod in the lab.

    Pods on their way out (a rollout's old ones) are left out; a new pod's Envoy is waited for.
    """
    items = lab.get_json("pods", "-A")["items"]
    live = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items
            if not i["metadata"].get("deletionTimestamp")
            and any(c["name"] == "istio-proxy" for c in i["spec"]["containers"])}
    deadline = time.monotonic() + timeout
    while True:
        records = {(r["namespace"], r["name"]): r for r in labctl.pod_records()}
        if live <= set(records):
            try:
                return {f"{ns}/{name}": dynamic_listeners(records[(ns, name)]["address"])
                        for ns, name in sorted(live)}
            except OSError:
                pass  # an Envoy still starting
        if time.monotonic() > deadline:
            raise AssertionError(f"no readable Envoy for {sorted(live - set(records))}")
        time.sleep(0.5)


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def with_options(envoys: dict[str, dict[str, dict[str, Any]]]) -> dict[str, list[str]]:
    return {pod: sorted(name for name, entry in listeners.items() if options_of(entry))
            for pod, listeners in envoys.items()
            if any(options_of(entry) for entry in listeners.values())}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_istiod_puts_the_options_on_exactly_the_gateways_tcp_listeners(clean: Lab,
                                                                       style: str) -> None:
    lab = clean
    namespace, _deployment, selector, ports = STYLES[style]
    done = lab.keepalive("enable", "-y", "-n", namespace, "-l", selector, *FAST)
    assert done.returncode == 0, done.stderr
    envoys = envoys_of(lab, namespace, selector)
    assert envoys
    for pod, listeners in envoys.items():
        tcp = {f"0.0.0.0_{p}" for p in ports}
        # The Helm gateway terminates TLS on 443, so istiod adds an HTTP/3 (UDP) listener.
        udp = {"udp_0.0.0.0_443"} if style == "helm-80-443" else set()
        assert set(listeners) == tcp | udp, pod
        for name, entry in listeners.items():
            assert "error_state" not in entry, (pod, name, entry["error_state"])
            assert entry["active_state"]["version_info"], "a listener istiod did not send"
            assert options_of(entry) == (WANTED if name in tcp else []), (pod, name)
    # No other pod in the lab got anything: the selector and namespace held.
    spread = with_options(every_envoy(lab))
    assert set(spread) == {f"{namespace}/{pod}" for pod in envoys}, spread
    done = lab.keepalive("disable", "-y", "-n", namespace, "-l", selector)
    assert done.returncode == 0, done.stderr
    assert with_options(every_envoy(lab)) == {}


def test_the_http3_listener_is_left_alone_and_envoy_accepts_the_update(clean: Lab) -> None:
    lab = clean
    namespace, _deployment, selector, _ports = STYLES["helm-80-443"]
    done = lab.keepalive("enable", "-y", "-n", namespace, "-l", selector, *FAST)
    assert done.returncode == 0, done.stderr
    (envoy_filter,) = lab.get_json("envoyfilters.networking.istio.io", "-n", namespace)["items"]
    matches = [p["match"]["listener"] for p in envoy_filter["spec"]["configPatches"]]
    # 443 is shared with the UDP listener: the patch names the TCP listener, not only the port.
    assert {"portNumber": 443, "name": "0.0.0.0_443"} in matches, matches
    (pod,) = running_pods(lab, namespace, selector)
    address = lab.pod_address(namespace, pod)
    listeners = dynamic_listeners(address)
    quic = listeners["udp_0.0.0.0_443"]
    assert "error_state" not in quic
    socket_address = quic["active_state"]["listener"]["address"]["socket_address"]
    assert socket_address["protocol"] == "UDP" and options_of(quic) == []
    assert options_of(listeners["0.0.0.0_443"]) == WANTED
    with urllib.request.urlopen(f"http://{address}:15000/stats?filter=lds.update_rejected",
                                timeout=10) as reply:
        assert reply.read().decode().strip() == "listener_manager.lds.update_rejected: 0"
    shown = lab.keepalive("status", "-n", namespace, "-l", selector, "-o", "json")
    (gateway,) = json.loads(shown.stdout)["gateways"]
    (udp,) = [lst for p in gateway["pods"] for lst in p["listeners"] if lst["protocol"] == "UDP"]
    assert udp["state"] == "active" and not udp["keepalive"]["enabled"]


def test_the_gateway_is_not_rolled_while_istiod_has_not_pushed_the_filter(clean: Lab) -> None:
    lab = clean
    namespace, _deployment, selector, ports = STYLES["istiooperator-8080-8443"]
    before = running_pods(lab, namespace, selector)
    pid = int((labctl.run_dir() / "istiod-default.pid").read_text())
    # A frozen istiod keeps its xDS streams open but pushes nothing: an overloaded control plane.
    os.kill(pid, signal.SIGSTOP)
    try:
        done = lab.keepalive("enable", "-y", "-n", namespace, "-l", selector, *FAST,
                             "--timeout", "8s")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.returncode == 4, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "istiod has not pushed the change" in last and "was not restarted" in last, last
    assert "already done: envoyfilter istio-system/keepalive-istio-ingressgateway created" in last
    assert running_pods(lab, namespace, selector) == before
    # istiod, thawed, pushes; the running Envoy takes the options in place on new sockets ...
    tcp = {f"0.0.0.0_{p}" for p in ports}
    eventually(lambda: with_options(envoys_of(lab, namespace, selector))
               == {pod: sorted(tcp) for pod in before}, "istiod to push the filter")
    # ... so the same command, run again, finds nothing left to do and rolls nothing.
    again = lab.keepalive("enable", "-y", "-n", namespace, "-l", selector, *FAST)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert running_pods(lab, namespace, selector) == before


def test_a_root_namespace_filter_without_selector_spreads_and_the_plugins_does_not(
        clean: Lab) -> None:
    lab = clean
    done = lab.keepalive("enable", "-y", "-n", "istio-system", "-l",
                         "app=istio-ingressgateway", *FAST)
    assert done.returncode == 0, done.stderr
    written = lab.get_json("envoyfilters.networking.istio.io", "-n", "istio-system", "-l",
                           "app.kubernetes.io/managed-by=kubectl-keepalive")["items"]
    # -l chose the gateway; the filter selects by its Deployment's own selector: never an
    # empty or missing selector, never the user's words.
    deployment = lab.get_json("deployment", "istio-ingressgateway", "-n", "istio-system")
    assert [w["spec"]["workloadSelector"]["labels"] for w in written] == [
        deployment["spec"]["selector"]["matchLabels"]]
    spread = with_options(every_envoy(lab))
    ours_pods = running_pods(lab, "istio-system", "app=istio-ingressgateway")
    # Not even istio-internalgateway, in the same (root) namespace, got it.
    assert set(spread) == {f"istio-system/{pod}" for pod in ours_pods}, spread
    # What the plugin never writes: its patches (plus one for port 80) in the root namespace
    # with no selector.
    (ours,) = written
    patches = ours["spec"]["configPatches"]
    on_80 = json.loads(json.dumps(patches[0]))
    on_80["match"]["listener"] = {"portNumber": 80}
    unselected = {
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "mesh-wide-keepalive", "namespace": "istio-system",
                     "labels": {"keepalive-test": "true"}},
        "spec": {"configPatches": [*patches, on_80]},
    }
    lab.apply(unselected)
    # Both istiods push it to running proxies (an object without istio.io/rev belongs to every
    # revision): every gateway listener on a patched port, in every namespace, gets the options
    # without any restart.
    def reached() -> set[str]:
        return {p.split("/")[0] for p in with_options(every_envoy(lab))}

    eventually(lambda: reached() == {"istio-system", "istio-ingress", "web", "istio-canary"},
               "the selector-less root filter to reach every gateway of every revision")


def rendered_filter(lab: Lab, namespace: str, selector: str) -> dict[str, Any]:
    done = lab.keepalive("enable", "--dry-run=client", "-o", "json", "-n", namespace, "-l",
                         selector, *FAST)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    items = document.get("items", [document])
    (envoy_filter,) = [i for i in items if i.get("kind") == "EnvoyFilter"]
    return dict(envoy_filter)


def test_the_revision_label_decides_which_istiod_applies_the_filter(clean: Lab) -> None:
    lab = clean
    namespace, _deployment, selector, _ports = STYLES["revision-canary"]
    # Pods pinned to the canary revision (label and the injector's annotation agree).
    envoy_filter = rendered_filter(lab, namespace, selector)
    assert envoy_filter["metadata"]["labels"]["istio.io/rev"] == "canary"
    # The same filter labelled for the default control plane, and one for the tag ...
    envoy_filter["metadata"]["labels"] = {"keepalive-test": "true", "istio.io/rev": "default"}
    lab.apply(envoy_filter)
    tagged = json.loads(json.dumps(envoy_filter))
    tagged["metadata"]["name"] += "-tagged"
    tagged["metadata"]["labels"]["istio.io/rev"] = labctl.gws.REVISION_TAG
    lab.apply(tagged)
    # ... then a marker the canary istiod does take: only its 8443 patch, named apart. Once the
    # marker is live, the canary istiod has seen (and skipped) the other two: istiod matches a
    # config's revision label against its revision, never against a tag pointing to it.
    marker = json.loads(json.dumps(envoy_filter))
    marker["metadata"]["name"] += "-marker"
    marker["metadata"]["labels"]["istio.io/rev"] = "canary"
    marker["spec"]["configPatches"] = [p for p in marker["spec"]["configPatches"]
                                       if p["match"]["listener"]["portNumber"] == 8443]
    lab.apply(marker)

    def patched() -> set[str]:
        return {name for listeners in envoys_of(lab, namespace, selector).values()
                for name, entry in listeners.items() if options_of(entry)}

    eventually(lambda: patched() == {"0.0.0.0_8443"}, "the canary istiod to push the marker")
    # Relabelled for the canary revision: its istiod pushes it to the running pods.
    envoy_filter["metadata"]["labels"]["istio.io/rev"] = "canary"
    lab.apply(envoy_filter)
    eventually(lambda: "0.0.0.0_8080" in patched(),
               "the canary istiod to apply the canary-labelled filter")


def test_istioctl_proxy_config_listener_agrees_with_status(clean: Lab, tmp_path: Path) -> None:
    lab = clean
    namespace, _deployment, selector, ports = STYLES["istiooperator-8080-8443"]
    assert lab.keepalive("enable", "-y", "-n", namespace, "-l", selector, *FAST).returncode == 0
    (pod,) = running_pods(lab, namespace, selector)
    shown = subprocess.run([labctl.lab_binary("istioctl-"), "proxy-config", "listener", pod,
                            "-n", namespace, "-o", "json", "--kubeconfig", lab.kubeconfig],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    dump = tmp_path / "listeners.json"
    dump.write_text(shown.stdout)
    offline = lab.keepalive("status", "--from-file", str(dump), "-o", "json")
    assert offline.returncode == 0, offline.stderr
    live = lab.keepalive("status", "-n", namespace, "-l", selector, "-o", "json")
    assert live.returncode == 0, live.stderr

    def keepalive_by_port(document: dict[str, Any]) -> dict[int, dict[str, Any]]:
        # istioctl lists only active listeners; status also shows an older one still draining.
        return {lst["port"]: lst["keepalive"]
                for g in document["gateways"] for p in g["pods"] for lst in p["listeners"]
                if lst["port"] in ports and lst["state"] == "active"}

    from_istioctl = keepalive_by_port(json.loads(offline.stdout))
    from_plugin = keepalive_by_port(json.loads(live.stdout))
    assert from_istioctl == from_plugin == {
        p: {"enabled": True, "idle": 7, "interval": 5, "probes": 2} for p in ports}
