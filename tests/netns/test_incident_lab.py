"""The incident reproduced with real packets, and fixed by the plugin's socket options.

The balancer forgets a flow after IDLE seconds without packets; the backend answers after
DELAY > IDLE, and nothing crosses the connection meanwhile. Only keepalive probes from the
gateway's downstream socket can keep the balancer's flow alive.
"""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from kubectl_keepalive.cli.main import main
from tests.support.netlab import (
    CLIENT_IP,
    GATEWAY_IP,
    GATEWAY_PORT,
    IncidentLab,
    Packet,
    gateway_listener,
    keepalive_socket_options,
    machine_for_labs,
    missing_requirements,
    netns_list,
    probe_answers,
    remove_stale_labs,
    resets,
)
from tests.support.standin_istio_merge import merge_listener_patches

pytestmark = pytest.mark.netns

IDLE = 4  # the balancer's idle timeout, seconds
DELAY = 10.0  # the backend answers after this: well past IDLE


@pytest.fixture(scope="module", autouse=True)
def machine() -> Iterator[None]:
    yield from machine_for_labs("the incident lab", missing_requirements())


def plugin_socket_options(idle: int, interval: int, probes: int) -> list[dict[str, Any]]:
    """The socket options that `kubectl keepalive enable` gives the gateway's listener.

    Rendered offline by the plugin, then merged into the listener as Istio's MERGE does.
    """
    out, err = io.StringIO(), io.StringIO()
    code = main(["enable", "--dry-run=client", "-o", "json", "-n", "istio-system", "-l",
                 "app=istio-ingressgateway,istio=ingressgateway", "--port", str(GATEWAY_PORT),
                 "--idle", str(idle), "--interval", str(interval), "--probes", str(probes)],
                out, err, None, {})
    assert code == 0, err.getvalue()
    merged = merge_listener_patches(gateway_listener(), json.loads(out.getvalue()))
    options: list[dict[str, Any]] = merged["socket_options"]
    return options


def data_from_gateway(packets: list[Packet], port: int) -> list[Packet]:
    return [p for p in packets if p.sport == port and p.length > 1]


def test_the_plugins_options_are_the_keepalive_recipe() -> None:
    rendered = plugin_socket_options(2, 2, 3)
    raw = [{key: int(option[key]) for key in ("level", "name", "int_value")}
           for option in rendered]
    assert raw == keepalive_socket_options(2, 2, 3)
    assert {option.get("state", "STATE_PREBIND") for option in rendered} == {"STATE_PREBIND"}


@pytest.mark.parametrize("reset", [False, True], ids=["drop", "reset"])
def test_without_keepalive_the_balancer_cuts_the_long_request(reset: bool) -> None:
    with IncidentLab(IDLE, reset_on_expired=reset, backend_delay_s=DELAY) as lab:
        # Conntrack timeouts are per network namespace: only the balancer's is short.
        assert lab.conntrack_timeouts[lab.lb] == IDLE
        assert lab.conntrack_timeouts[lab.gw] > IDLE
        assert lab.request(delay_s=0.2).ok  # the path works for a short request
        with lab.capture() as capture:
            result = lab.request()
        gateway_side, client_side = capture.packets("gateway"), capture.packets("client")
    assert not result.ok, result
    assert result.error == "timeout" and result.seconds >= DELAY, result
    # The gateway did answer, after DELAY; the balancer let none of it through.
    assert data_from_gateway(gateway_side, GATEWAY_PORT), capture.text("gateway")
    assert not data_from_gateway(client_side, 80), capture.text("client")
    refused = [p for p in resets(gateway_side) if p.dst == GATEWAY_IP]
    if reset:
        # The balancer answers the expired flow's packet with a reset to its sender, the
        # gateway; the client, silent while it waits, hears nothing and times out.
        assert refused and refused[0].src == CLIENT_IP, capture.text("gateway")
    else:
        assert not refused, capture.text("gateway")


def test_keepalive_below_the_idle_timeout_saves_the_request() -> None:
    with IncidentLab(IDLE, backend_delay_s=DELAY) as lab:
        # Applied live through LDS, as the plugin's EnvoyFilter reaches a running gateway.
        lab.set_socket_options(plugin_socket_options(idle=2, interval=2, probes=3))
        with lab.capture() as capture:
            pending = lab.start_request()
            time.sleep(3.0)  # after the first probe (2 s), before the next
            sockets = lab.gateway_sockets()
            flows = lab.balancer_flows()
            result = pending.wait()
        gateway_probes, client_probes = capture.gateway_probes()
        answers = probe_answers(capture.packets("gateway"), gateway_probes)
    assert result.ok and result.status == 200 and result.seconds >= DELAY, result
    # The accepted socket of this request carries the keepalive timer (ss -tno).
    mine = [s for s in sockets if s.peer == f"{CLIENT_IP}:{result.local_port}"]
    assert mine and mine[0].keepalive, sockets
    assert mine[0].expires_s is not None and mine[0].expires_s <= 2.1, mine
    # The balancer's flow is alive, with at most its idle timeout left.
    ours = [f for f in flows if f"sport={result.local_port} " in f.line]
    assert ours and ours[0].state == "ESTABLISHED" and ours[0].timeout_s <= IDLE, flows
    # Probes every 2 s, each through the balancer to the client and answered.
    assert len(gateway_probes) >= int(DELAY / 2) - 2, capture.text("gateway")
    assert len(client_probes) == len(gateway_probes), capture.text("client")
    assert len(answers) == len(gateway_probes), capture.text("gateway")
    gaps = [b.time - a.time for a, b in pairwise(gateway_probes)]
    assert 1.8 <= statistics.median(gaps) <= 2.3, gaps
    assert max(gaps) < IDLE, gaps


def test_keepalive_above_the_idle_timeout_does_not_save_it() -> None:
    # The first probe comes after IDLE + 3 s: the balancer forgot the flow at IDLE, so it
    # drops the probe. The mechanism, not luck, is what saves the request above.
    late = IDLE + 3
    options = plugin_socket_options(idle=late, interval=2, probes=3)
    with IncidentLab(IDLE, listener_socket_options=options, backend_delay_s=DELAY) as lab:
        with lab.capture() as capture:
            pending = lab.start_request()
            time.sleep(1.0)
            sockets = lab.gateway_sockets()
            result = pending.wait()
        gateway_probes, client_probes = capture.gateway_probes()
    assert any(s.keepalive for s in sockets), sockets  # keepalive is on, just too late
    assert not result.ok and result.error == "timeout", result
    assert gateway_probes, capture.text("gateway")
    assert gateway_probes[0].time - capture.packets("gateway")[0].time >= late - 0.5
    assert client_probes == [], capture.text("client")  # dropped by the balancer


def test_removing_the_options_brings_the_cut_back() -> None:
    options = plugin_socket_options(idle=2, interval=2, probes=3)
    with IncidentLab(IDLE, listener_socket_options=options, backend_delay_s=DELAY) as lab:
        assert lab.request().ok
        lab.set_socket_options(None)  # live LDS update: new listen sockets, no keepalive
        pending = lab.start_request()
        time.sleep(1.0)
        sockets = lab.gateway_sockets()
        result = pending.wait()
    assert sockets and not any(s.keepalive for s in sockets), sockets
    assert not result.ok and result.error == "timeout", result


def test_the_lab_gateway_dump_reads_back_through_status() -> None:
    options = plugin_socket_options(idle=2, interval=2, probes=3)
    with IncidentLab(IDLE, listener_socket_options=options, backend_delay_s=DELAY) as lab:
        dump = lab.listener_dump()
    out, err = io.StringIO(), io.StringIO()
    assert main(["status", "--from-file", "-", "-o", "json"], out, err, None, {},
                io.StringIO(dump)) == 0, err.getvalue()
    listener = json.loads(out.getvalue())["gateways"][0]["pods"][0]["listeners"][0]
    assert listener["keepalive"] == {"enabled": True, "idle": 2, "interval": 2, "probes": 3}


def test_a_crashed_runs_namespaces_are_removed() -> None:
    # A namespace named like a lab of a process that cannot exist (above pid_max).
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    name = f"kka-{dead}-1-gw"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        assert name in remove_stale_labs()
        assert name not in netns_list()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
