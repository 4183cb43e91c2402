"""`kubectl keepalive probe` with no target: it finds the lab gateway's LoadBalancer address
(`status.loadBalancer.ingress`, set here to the incident lab's balancer) and the Service ports
that lead to its listeners, takes the hold from the balancer the Service declares, and the
gateway's own idle timers from its real Envoy (configured by the real istiod).

The probe runs where the users are: in the incident lab's client namespace, behind the
balancer; the lab API server is relayed into that namespace's loopback at its own address.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubectl_keepalive.doctor import balancers
from tests.cluster.conftest import Lab, labctl
from tests.support import probelab
from tests.support.netlab import VIP, VIP_PORT, IncidentLab, missing_requirements
from tests.support.nsrelay import loopback_relay

pytestmark = pytest.mark.cluster

NS = "istio-system"
NAME = "istio-ingressgateway"
SELECTOR = "app=istio-ingressgateway"
IDLE = 6
HTTPS_PORT, HTTPS_TARGET = 443, 8443


def _status(lab: Lab, ingress: list[dict[str, str]]) -> None:
    lab.kubectl("patch", "service", NAME, "-n", NS, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"loadBalancer": {"ingress": ingress}}}))


@pytest.fixture
def fronted(clean: Lab) -> Iterator[Lab]:
    """The gateway Service declares an L4 balancer with IDLE s and has the VIP as address."""
    clean.kubectl("annotate", "service", NAME, "-n", NS, "--overwrite",
                  f"{balancers.DECLARED_KIND}=l4", f"{balancers.DECLARED_IDLE}={IDLE}")
    _status(clean, [{"ip": VIP}])
    try:
        yield clean
    finally:
        _status(clean, [])
        clean.kubectl("annotate", "service", NAME, "-n", NS, f"{balancers.DECLARED_KIND}-",
                      f"{balancers.DECLARED_IDLE}-")


def _api_address(kubeconfig: str) -> tuple[str, int]:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    assert server.hostname and server.port
    return server.hostname, server.port


def _probe_in_client(lab: Lab, incident: IncidentLab, *args: str
                     ) -> subprocess.CompletedProcess[str]:
    """`kubectl keepalive probe ARGS` through the real kubectl, in the client's namespace."""
    return subprocess.run(["ip", "netns", "exec", incident.client, "kubectl", "keepalive",
                           "probe", *args], env=lab.env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_without_a_target_probe_finds_the_balancer_address_cut_then_kept_by_enable(
        fronted: Lab, tmp_path: Path) -> None:
    missing = missing_requirements()
    if missing:
        pytest.skip("incident lab needs " + ", ".join(missing))
    netns = labctl.single_pod_netns(fronted.kubeconfig, NS, SELECTOR)
    # The backend answers at once: the probe's "/" reaches it on both ports (443 is a TLS
    # passthrough to it in the lab, where it speaks plain HTTP).
    with IncidentLab(IDLE, backend_delay_s=0.0, workdir=tmp_path,
                     gateway_netns=netns) as incident:
        probelab.balancer_owns_vip(incident)
        probelab.forward_port(incident, HTTPS_PORT, HTTPS_TARGET)
        with loopback_relay(incident.client, *_api_address(fronted.kubeconfig)):
            done = _probe_in_client(fronted, incident, "-n", NS, "-l", SELECTOR,
                                    "--insecure-skip-tls-verify", "-o", "json")
            enabled = fronted.keepalive("enable", "-y", "-n", NS, "-l", SELECTOR, "--idle",
                                        "2s", "--interval", "2s", "--probes", "3")
            assert enabled.returncode == 0, enabled.stderr
            incident.retarget(labctl.single_pod_netns(fronted.kubeconfig, NS, SELECTOR))
            probelab.balancer_owns_vip(incident)  # its route went with the old pod's link
            after = _probe_in_client(fronted, incident, "-n", NS, "-l", SELECTOR, "-o", "json")
    assert done.returncode == 4, done.stderr
    results = {r["port"]: r for r in json.loads(done.stdout)["results"]}
    assert sorted(results) == [VIP_PORT, HTTPS_PORT], done.stdout
    for port, listener in ((VIP_PORT, 8080), (HTTPS_PORT, HTTPS_TARGET)):
        result = results[port]
        assert result["address"] == VIP and result["listener_port"] == listener
        # The hold came from the declared balancer: its idle timeout plus the margin.
        assert result["hold_seconds"] == IDLE + 5
        assert result["outcome"] == "no answer", (result, done.stderr)
        assert not result["tls"]  # neither listener terminates TLS in the lab
    assert f"the balancer's idle timeout {IDLE}s + 5s" in done.stderr
    # After enable, the same command: every connection survived, the gateway's probes seen.
    assert after.returncode == 0, after.stdout + after.stderr
    for result in json.loads(after.stdout)["results"]:
        assert result["outcome"] == "survived" and result["probes_seen"] >= 3, result


def test_a_hold_past_the_gateways_own_idle_timeout_is_refused_naming_it(fronted: Lab) -> None:
    done = fronted.keepalive("probe", "-n", NS, "-l", SELECTOR, "--hold", "2h")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: --hold 2h reaches the gateway's own hcm idle_timeout (1h)")
    assert "common_http_protocol_options.idle_timeout" in line
    assert done.stdout == ""
