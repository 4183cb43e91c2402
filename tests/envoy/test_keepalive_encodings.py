"""Tier 2: what the kernel really does for each way of setting keepalive, against the goldens.

For the golden cases of scripts/make_golden_dumps.py that carry keepalive in another encoding
(`tcp_keepalive`, `additional_addresses` overrides, `buf_value`/typed options, SO_KEEPALIVE
alone), the very listeners Envoy was given (input/lds-*.yaml) are bound for real on loopback:
127.0.0.1 and, for additional addresses, 127.0.0.2 and 127.0.0.3. One connection per address,
then `ss -tno` on the accepted socket: a keepalive timer must be there exactly when the golden
says keepalive is on, counting down from its idle time (the kernel's tcp_keepalive_time when
the config leaves it unset). The live dump read by `status` must say the same.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kubectl_keepalive.cli.main import main
from tests.support.envoy import Envoy, require_envoy

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
SCRIPT = REPO / "scripts" / "make_golden_dumps.py"
LOOPBACKS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden_dumps_sockets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


CASES: list[str] = list(_generator().SOCKET_CASES)


def kernel_idle() -> int:
    """This network namespace's default (a pod's sysctls may differ from 7200)."""
    return int(Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text())


def ss_timer(text: str) -> tuple[float, float] | None:
    """(seconds left, resolution) of a `timer:(keepalive,...)` in `ss -tno` output (1min39sec,
    119min, 44sec, 1.500ms), or None when the socket has no keepalive timer. Past an hour ss
    prints whole minutes only."""
    found = re.search(r"timer:\(keepalive,([^,)]+)", text)
    if not found:
        return None
    parts = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?", found.group(1))
    assert parts, found.group(0)
    minutes, seconds, millis = (int(p or 0) for p in parts.groups())
    resolution = 60.0 if parts.group(1) and not (parts.group(2) or parts.group(3)) else 1.0
    return minutes * 60 + seconds + millis / 1000, resolution


def test_ss_timer_formats() -> None:
    assert ss_timer("ESTAB timer:(keepalive,1min39sec,0)") == (99, 1)
    assert ss_timer("timer:(keepalive,119min,0)") == (7140, 60)
    assert ss_timer("timer:(keepalive,1.500ms,0)") == (1.5, 1)
    assert ss_timer("timer:(keepalive,44sec,0)") == (44, 1)
    assert ss_timer("timer:(on,200ms,0)") is None


def live_listeners(case: str, ports: dict[str, int]) -> list[dict[str, Any]]:
    """The case's last LDS listeners, bound for real on loopback with free ports."""
    inputs = sorted((GOLDEN / case / "input").glob("lds-*.yaml"))
    listeners: list[dict[str, Any]] = yaml.safe_load(inputs[-1].read_text())["resources"]
    for listener in listeners:
        port = ports[listener["name"]]
        listener.pop("bind_to_port", None)
        listener["address"] = {"socket_address": {"address": LOOPBACKS[0], "port_value": port}}
        for host, extra in zip(LOOPBACKS[1:], listener.get("additional_addresses", []),
                               strict=False):
            extra["address"] = {"socket_address": {"address": host, "port_value": port}}
    return listeners


def timer_of(client: socket.socket) -> tuple[float, float] | None:
    """The keepalive timer of the server side of `client`'s connection."""
    # Both ends named: a port alone can match another process's connection (the lab cluster
    # may be running beside this tier, with Go clients' 30 s keepalives).
    local_host, local_port = client.getsockname()[:2]
    peer_host, peer_port = client.getpeername()[:2]
    deadline = time.monotonic() + 3
    while True:
        ends = f"( src {peer_host}:{peer_port} and dst {local_host}:{local_port} )"
        shown = subprocess.run(["ss", "-tno", "state", "established", ends],
                               capture_output=True, text=True, check=True).stdout
        accepted = "\n".join(line for line in shown.splitlines()[1:] if line.strip())
        if accepted or time.monotonic() > deadline:
            assert accepted, f"no accepted socket for client port {local_port}"
            return ss_timer(accepted)
        time.sleep(0.05)


def expected_idle(keepalive: dict[str, Any]) -> int | None:
    if not keepalive["enabled"]:
        return None
    return int(keepalive["idle"]) if keepalive["idle"] is not None else kernel_idle()


@pytest.mark.parametrize("case", CASES)
def test_kernel_timers_match_the_golden(tmp_path: Path, case: str) -> None:
    require_envoy()
    expected = {e["name"]: e for e in json.loads((GOLDEN / case / "expected.json").read_text())
                ["listeners"] if not e["static"] and e["state"] == "active"}
    ports = {name: _free_port() for name in expected}
    listeners = live_listeners(case, ports)
    checked: list[tuple[str, str, tuple[float, float] | None, int | None]] = []
    with Envoy(tmp_path) as envoy:
        envoy.set_listeners(listeners)
        for name, entry in expected.items():
            wanted = [(LOOPBACKS[0], entry["keepalive"])] + [
                (LOOPBACKS[i + 1], extra["keepalive"])
                for i, extra in enumerate(entry["additional_addresses"])]
            for host, keepalive in wanted:
                with socket.create_connection((host, ports[name]), timeout=5) as client:
                    checked.append((name, host, timer_of(client), expected_idle(keepalive)))
        dump = envoy.config_dump("resource=dynamic_listeners")
    for name, host, timer, idle in checked:
        where = f"{case} {name} on {host}"
        if idle is None:
            assert timer is None, f"{where}: keepalive timer {timer}s, the golden says off"
        else:
            assert timer is not None, f"{where}: no keepalive timer, the golden says {idle}s"
            left, resolution = timer
            assert idle - 5 - resolution < left <= idle, f"{where}: timer {left}s, idle {idle}s"
    assert len(checked) >= len(expected)
    # The live dump of the same listeners reads as the golden through `status`.
    out, err = io.StringIO(), io.StringIO()
    assert main(["status", "--from-file", "-", "-o", "json"], out, err, None, {},
                io.StringIO(dump)) == 0, err.getvalue()
    seen = {lst["name"]: lst for lst in json.loads(out.getvalue())["gateways"][0]["pods"][0]
            ["listeners"]}
    for name, entry in expected.items():
        assert seen[name]["keepalive"] == entry["keepalive"], name
        assert [a["keepalive"] for a in seen[name]["additional_addresses"]] == [
            a["keepalive"] for a in entry["additional_addresses"]], name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
