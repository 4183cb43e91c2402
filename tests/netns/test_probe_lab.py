"""`kubectl keepalive probe` through the lab's real balancers to a real Envoy gateway.

The NAT balancer forgets a flow after IDLE seconds without packets (dropping, or resetting, what
comes after); the probe holds its connection silent for HOLD > IDLE and asks again. Without
keepalive the second request is cut; with the plugin's options on the gateway's listener its
probes keep the flow, and the client's kernel counts them (TCP_INFO) as the capture does. A
proxying balancer (HAProxy, TCP mode) and a CONNECT proxy (tinyproxy) show the limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubectl_keepalive.doctor import analysis, balancers, timers
from tests.netns.test_incident_lab import plugin_socket_options
from tests.support import probelab
from tests.support.netlab import (
    GATEWAY_IP,
    GATEWAY_PORT,
    VIP,
    VIP_PORT,
    IncidentLab,
    gateway_listener,
    machine_for_labs,
    missing_requirements,
)

pytestmark = pytest.mark.netns

IDLE = 6  # the balancers' idle timeout, seconds
HOLD = "10s"
# The lab backend answers at once with ?delay=0 (it stands for the slow app otherwise).
PATH = "/slow?delay=0"
URL = f"http://{VIP}:{VIP_PORT}{PATH}"
TLS_URL = f"https://{VIP}:{VIP_PORT}{PATH}"


@pytest.fixture(scope="module", autouse=True)
def machine() -> Iterator[None]:
    yield from machine_for_labs("probe's lab", missing_requirements() + probelab.missing_tools())


def keepalive_on(lab: IncidentLab) -> None:
    lab.set_socket_options(plugin_socket_options(idle=2, interval=2, probes=3))


@pytest.mark.parametrize(("reset", "outcome"), [(False, "no answer"), (True, "reset")],
                         ids=["drop", "reset"])
def test_without_keepalive_the_probe_reports_the_cut(reset: bool, outcome: str) -> None:
    with IncidentLab(IDLE, reset_on_expired=reset) as lab:
        probelab.balancer_owns_vip(lab)
        done = probelab.run_probe(lab, "--url", URL, "--hold", HOLD, "-o", "json")
    assert done.code == 4, done.stderr
    result = done.only
    assert result["outcome"] == outcome and not result["survived"]
    assert result["statuses"] == [200]  # the first request proved the path
    assert result["held_seconds"] >= 10 and result["probes_seen"] == 0
    assert "cut at some point in the 10s of silence" in result["detail"]


def test_with_keepalive_the_probe_survives_and_counts_the_gateways_probes() -> None:
    with IncidentLab(IDLE) as lab:
        keepalive_on(lab)
        with lab.capture() as capture:
            done = probelab.run_probe(lab, "--url", URL, "--hold", HOLD, "-o", "json")
        _, client_side = capture.gateway_probes()
    assert done.code == 0, done.stderr
    result = done.only
    assert result["outcome"] == "survived" and result["statuses"] == [200, 200]
    # Idle 2 s, interval 2 s over 10 s of silence; the kernel's count is the capture's.
    assert result["probes_seen"] >= 3, result
    assert abs(result["probes_seen"] - len(client_side)) <= 1, (result, capture.text("client"))


def test_the_table_and_the_progress_lines() -> None:
    with IncidentLab(IDLE) as lab:
        keepalive_on(lab)
        done = probelab.run_probe(lab, "--url", URL, "--hold", "6s")
    assert done.code == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["TARGET", "ADDRESS", "PORT", "TLS", "HELD", "PROBES", "RESULT"]
    assert row.split()[:5] == [f"http://{VIP}{PATH}", VIP, str(VIP_PORT), "no", "6s"]
    assert row.split()[-1] == "survived" and int(row.split()[5]) >= 2
    # Not a terminal: plain lines now and then, never a carriage return.
    assert "probe: holding" in done.stderr and "\r" not in done.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return probelab.lab_pki(tmp_path_factory.mktemp("lab-pki"))


def test_tls_with_a_server_name_cut_then_kept(pki: Path) -> None:
    trust = {"SSL_CERT_FILE": str(pki / "ca.crt")}
    with IncidentLab(IDLE) as lab:
        lab.set_listener(probelab.tls_listener(gateway_listener(), pki))
        # No server name: the gateway matches no filter chain, and the probe says why.
        nameless = probelab.run_probe(lab, "--url", TLS_URL, "--hold", "1s", "-o", "json",
                                      env=trust)
        cut = probelab.run_probe(lab, "--url", TLS_URL, "--host", probelab.SERVER_NAME,
                                 "--hold", HOLD, "-o", "json", env=trust)
        lab.set_listener(probelab.tls_listener(
            gateway_listener(plugin_socket_options(idle=2, interval=2, probes=3)), pki))
        kept = probelab.run_probe(lab, "--url", TLS_URL, "--host", probelab.SERVER_NAME,
                                  "--hold", HOLD, "-o", "json", env=trust)
    assert nameless.code == 3, nameless.stderr
    assert "no --host was given, so no server name was sent" in nameless.only["detail"]
    assert cut.code == 4 and cut.only["outcome"] == "no answer", cut.stdout
    assert cut.only["tls"] and cut.only["server_name"] == probelab.SERVER_NAME
    assert kept.code == 0 and kept.only["outcome"] == "survived", kept.stdout + kept.stderr
    assert kept.only["probes_seen"] >= 3


def test_a_target_that_refuses_the_connection_is_exit_3() -> None:
    with IncidentLab(IDLE) as lab:
        done = probelab.run_probe(lab, "--url", f"http://{GATEWAY_IP}:9/", "--hold", "1s")
    assert done.code == 3, done.stderr
    assert f"{GATEWAY_IP}:9 refused the connection" in done.stderr
    assert done.stdout.splitlines()[1].split()[-1] == "unreachable"


def test_a_proxying_balancer_cuts_even_with_keepalive_and_doctor_says_so() -> None:
    with IncidentLab(IDLE) as lab:
        keepalive_on(lab)
        with probelab.proxying_balancer(lab, IDLE) as address:
            behind_proxy = probelab.run_probe(lab, "--url", f"http://{address}{PATH}", "--hold",
                                              HOLD, "-o", "json")
            behind_nat = probelab.run_probe(lab, "--url", URL, "--hold", HOLD, "-o", "json")
        port = timers.read_port(lab.gateway.config_dump(), GATEWAY_PORT)
    # The gateway's probes end at HAProxy: its client side stays idle, and it closes it.
    assert behind_proxy.code == 4, behind_proxy.stderr
    assert behind_proxy.only["outcome"] == "closed", behind_proxy.stdout
    assert behind_proxy.only["probes_seen"] == 0
    assert behind_nat.code == 0 and behind_nat.only["outcome"] == "survived"
    # doctor, told that a proxying balancer is in front, does not count on keepalive.
    declared = {"metadata": {"name": "lab", "namespace": "lab", "annotations": {
        balancers.DECLARED_KIND: "l7", balancers.DECLARED_IDLE: str(IDLE)}}}
    report = analysis.analyze(port, balancers.detect(declared), analysis.Profile(duration=20))
    assert report.cut
    from kubectl_keepalive.doctor import render

    assert "keepalive will not help" in render.table(report)


def test_through_a_connect_proxy_it_survives_and_the_probes_are_not_visible(pki: Path) -> None:
    with IncidentLab(IDLE) as lab:
        lab.set_listener(probelab.tls_listener(
            gateway_listener(plugin_socket_options(idle=2, interval=2, probes=3)), pki))
        with probelab.connect_proxy(lab) as proxy:
            done = probelab.run_probe(
                lab, "--url", TLS_URL, "--host", probelab.SERVER_NAME, "--hold", HOLD,
                "-o", "json", env={"SSL_CERT_FILE": str(pki / "ca.crt"), "HTTPS_PROXY": proxy})
    assert done.code == 0, done.stdout + done.stderr
    result = done.only
    assert result["outcome"] == "survived"
    assert result["probes_seen"] is None
    assert result["probes_note"] == "probes not visible: proxy in the path"
    assert result["proxy"] == proxy.removeprefix("http://")
    assert "through proxy" in done.stderr and "HTTPS_PROXY" in done.stderr
