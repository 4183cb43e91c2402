"""What enable cuts, and when, measured on the lab cluster's gateway pod (issue 14).

A long request runs through the real chain (client -> balancer -> the istio-ingressgateway pod's
Envoy -> the slow backend in the pod). The plan must count it; `--when-quiet` must wait for it
to finish before writing; without it, istiod's push replaces the listener and Envoy cuts the
request when the drain time the plan predicted (read from the pod's proxy config, the mesh
config or Istio's defaults, as pilot-agent would pass it to Envoy) runs out.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Lab, labctl
from tests.support.netlab import GATEWAY_PORT, IncidentLab, missing_requirements

pytestmark = pytest.mark.cluster

NS = "istio-system"
SELECTOR = "app=istio-ingressgateway"
FAST = ("--idle", "1s", "--interval", "1s", "--probes", "3")
IDLE_TIMEOUT_S = 600  # the balancer must not be what cuts the request here


class PushWatch:
    """Polls the pod's Envoy admin: when a listener was last replaced (istiod's push)."""

    def __init__(self, address: str) -> None:
        query = urllib.parse.quote(r"^listener_manager\.listener_modified$", safe="")
        self.url = f"http://{address}:15000/stats?filter={query}"
        self.first = self._read()
        self.modified_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int:
        with urllib.request.urlopen(self.url, timeout=5) as reply:
            text = reply.read().decode()
        return int(text.partition(": ")[2].strip() or 0)

    def _run(self) -> None:
        while not self._stop.is_set() and self.modified_at is None:
            try:
                if self._read() > self.first:
                    self.modified_at = time.monotonic()
            except OSError:
                pass
            time.sleep(0.1)

    def __enter__(self) -> PushWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def the_pod(lab: Lab) -> tuple[str, str]:
    (pod,) = [p for p in lab.get_json("pods", "-n", NS, "-l", SELECTOR)["items"]
              if not p["metadata"].get("deletionTimestamp")]
    name = pod["metadata"]["name"]
    return name, lab.pod_address(NS, name)


def plan(lab: Lab) -> dict[str, Any]:
    shown = lab.keepalive("diff", "-o", "json", "-n", NS, "-l", SELECTOR, *FAST)
    assert shown.returncode == 1, shown.stderr
    (gateway,) = json.loads(shown.stdout)["gateways"]
    assert isinstance(gateway, dict)
    return gateway


def in_flight(gateway: dict[str, Any], port: int) -> dict[str, Any]:
    (entry,) = [p for p in gateway["ports"] if p["port"] == port]
    assert "in_flight" in entry, gateway
    found: dict[str, Any] = entry["in_flight"]
    return found


def wait_counted(lab: Lab, requests: int, timeout: float = 10.0) -> dict[str, Any]:
    """The plan once the request has reached the gateway (the client needs a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        gateway = plan(lab)
        if in_flight(gateway, GATEWAY_PORT)["requests"] >= requests or \
                time.monotonic() > deadline:
            return gateway
        time.sleep(0.5)


def incident(lab: Lab, tmp_path: Path, delay_s: float) -> IncidentLab:
    missing = missing_requirements()
    if missing:
        pytest.fail("the incident lab needs " + ", ".join(missing))
    netns = labctl.single_pod_netns(lab.kubeconfig, NS, SELECTOR)
    return IncidentLab(IDLE_TIMEOUT_S, backend_delay_s=delay_s, workdir=tmp_path,
                       gateway_netns=netns)


def test_when_quiet_waits_for_the_long_request_then_applies(clean: Lab, tmp_path: Path) -> None:
    lab = clean
    _pod, address = the_pod(lab)
    with incident(lab, tmp_path, 12.0) as chain:
        pending = chain.start_request()
        started = time.monotonic()
        gateway = wait_counted(lab, 1)
        counted = in_flight(gateway, GATEWAY_PORT)
        assert counted["requests"] == 1 and counted["connections"] >= 1, gateway
        with PushWatch(address) as watch:
            done = lab.keepalive("enable", "-y", "--when-quiet", "--no-restart", "-n", NS,
                                 "-l", SELECTOR, *FAST)
            result = pending.wait()
            finished = started + result.seconds
        assert done.returncode == 0, done.stderr
        assert result.ok and result.status == 200, result
        assert "waiting for a quiet moment" in done.stderr, done.stderr
        assert "in flight: 1 request on port" in done.stderr, done.stderr
        # The filter went in only once the request was done: its push came after.
        assert watch.modified_at is not None, "istiod never replaced the listener"
        assert watch.modified_at >= finished - 1.0, (watch.modified_at - finished)


def test_without_when_quiet_the_push_cuts_the_request_when_the_plan_said(
        clean: Lab, tmp_path: Path) -> None:
    lab = clean
    _pod, address = the_pod(lab)
    with incident(lab, tmp_path, 600.0) as chain:
        # The request outlives any drain time the plan can show; the client waits as long.
        pending = chain.start_request(timeout_s=600.0)
        started = time.monotonic()
        gateway = wait_counted(lab, 1)
        assert in_flight(gateway, GATEWAY_PORT)["requests"] == 1, gateway
        drain = gateway["push_drain"]
        assert drain is not None and drain["source"], gateway
        with PushWatch(address) as watch:
            done = lab.keepalive("enable", "-y", "--no-restart", "-v", "-n", NS, "-l",
                                 SELECTOR, *FAST)
            assert done.returncode == 0, done.stderr
            # The plan names the cut; -v adds where its timing came from.
            assert f"within {drain['seconds']:g}s by the push" in done.stderr, done.stderr
            assert f"push drain {drain['seconds']:g}s: {drain['source']}" in done.stderr
            result = pending.wait()
        cut = started + result.seconds
        assert not result.ok and result.error in ("closed", "reset"), result
        assert watch.modified_at is not None, "istiod never replaced the listener"
        took = cut - watch.modified_at
        assert abs(took - drain["seconds"]) <= 2.0, (
            f"cut {took:.1f}s after the push; the plan said {drain['seconds']}s "
            f"({drain['source']})")
