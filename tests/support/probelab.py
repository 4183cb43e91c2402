"""Additions to the incident lab (tests/support/netlab.py) for `probe`'s tests.

- A TLS gateway listener that routes by SNI, as an Istio gateway's HTTPS server does.
- A proxying balancer beside the NAT one: HAProxy in TCP mode (Debian's package) in the
  balancer's namespace on a second virtual address, its `timeout client`/`timeout server` as
  the idle timer. It ends TCP at itself, so the gateway's probes never reach the client's side.
- A CONNECT proxy in the client's path: tinyproxy (Debian's package) in a namespace of its
  own, linked to the client and to the balancer, so only its upstream leg crosses the balancer.
- `run_probe`: `kubectl keepalive probe` run in the client's namespace, bounded in time.

Addresses stay in 198.18.0.0/15 inside the lab's namespaces; every process is killed by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.netlab import (
    GATEWAY_IP,
    GATEWAY_PORT,
    NFT_TABLE,
    VIP,
    IncidentLab,
    LabError,
    in_ns,
    run,
)
from tests.support.probe_servers import make_pki

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "app.lab.test"
PROXYING_VIP, PROXYING_PORT = "198.18.100.11", 80
PROXY_IP, PROXY_CLIENT_SIDE_IP = "198.18.3.2", "198.18.3.1"
PROXY_LB_IP, LB_PROXY_IP = "198.18.4.2", "198.18.4.1"
PROXY_PORT = 8888
TOOLS = ("haproxy", "tinyproxy", "openssl")

TLS_CONTEXT = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
               "DownstreamTlsContext")
TLS_INSPECTOR = ("type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
                 "TlsInspector")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool)]


def lab_pki(folder: Path) -> Path:
    """A CA and a certificate for SERVER_NAME (ca.crt, server.crt, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    return make_pki(folder, SERVER_NAME)


def tls_listener(plain: Mapping[str, Any], pki: Path) -> dict[str, Any]:
    """`plain` (netlab.gateway_listener) serving TLS for SERVER_NAME only: a handshake without
    that server name matches no filter chain, as on an Istio gateway's HTTPS port."""
    listener = json.loads(json.dumps(plain))
    chain = listener["filter_chains"][0]
    chain["filter_chain_match"] = {"server_names": [SERVER_NAME]}
    chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": TLS_CONTEXT, "common_tls_context": {
            "alpn_protocols": ["http/1.1"],
            "tls_certificates": [{
                "certificate_chain": {"filename": str(pki / "server.crt")},
                "private_key": {"filename": str(pki / "server.key")}}]}}}
    listener["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector",
                                     "typed_config": {"@type": TLS_INSPECTOR}}]
    return dict(listener)


def balancer_owns_vip(lab: IncidentLab) -> None:
    """Let the balancer route the VIP itself, as a real one does. A packet of a forgotten flow
    is not DNATed, and without a route for the VIP the lab's balancer would drop it before its
    filter: now it reaches the filter, which drops it or answers it with a reset, as set."""
    in_ns(lab.lb, "ip", "route", "add", f"{VIP}/32", "via", GATEWAY_IP)


def forward_port(lab: IncidentLab, vip_port: int, gateway_port: int) -> None:
    """One more port of the VIP DNATed to the gateway (the lab forwards VIP_PORT only)."""
    in_ns(lab.lb, "nft", "add", "rule", "ip", NFT_TABLE, "prerouting", "ip", "daddr", VIP,
          "tcp", "dport", str(vip_port), "dnat", "to", f"{GATEWAY_IP}:{gateway_port}")


def _start(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_listening(namespace: str, address: str, port: int,
                    process: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = in_ns(namespace, "ss", "-tlnH", f"( sport = :{port} )", check=False).stdout
        if f"{address}:{port}" in shown:
            return
        if process.poll() is not None:
            raise LabError(f"{argv0(process)} exited {process.returncode}: "
                           f"{log.read_text(errors='replace')[-500:]}")
        time.sleep(0.1)
    raise LabError(f"{argv0(process)} did not listen on {address}:{port} in time")


def argv0(process: subprocess.Popen[bytes]) -> str:
    args = process.args
    return str(args[3] if isinstance(args, list) and len(args) > 3 else args)


@contextlib.contextmanager
def proxying_balancer(lab: IncidentLab, idle_timeout_s: int) -> Iterator[str]:
    """HAProxy in TCP mode on PROXYING_VIP:PROXYING_PORT in the balancer's namespace, in front
    of the same gateway. Yields the address to probe."""
    config = lab.workdir / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 64\n"
        "defaults\n  mode tcp\n  timeout connect 2s\n"
        f"  timeout client {idle_timeout_s}s\n  timeout server {idle_timeout_s}s\n"
        f"frontend vip\n  bind {PROXYING_VIP}:{PROXYING_PORT}\n  default_backend gateway\n"
        f"backend gateway\n  server gw {GATEWAY_IP}:{GATEWAY_PORT}\n")
    in_ns(lab.lb, "ip", "addr", "add", f"{PROXYING_VIP}/32", "dev", "lo")
    log = lab.workdir / "haproxy.log"
    process = _start(["ip", "netns", "exec", lab.lb, "haproxy", "-db", "-f", str(config)], log)
    try:
        _wait_listening(lab.lb, PROXYING_VIP, PROXYING_PORT, process, log)
        yield f"{PROXYING_VIP}:{PROXYING_PORT}"
    finally:
        _stop(process)
        in_ns(lab.lb, "ip", "addr", "del", f"{PROXYING_VIP}/32", "dev", "lo", check=False)


@contextlib.contextmanager
def connect_proxy(lab: IncidentLab) -> Iterator[str]:
    """tinyproxy in a namespace of its own between the client and the balancer. Yields the
    proxy URL for HTTPS_PROXY."""
    namespace = f"{lab.client.rsplit('-', 1)[0]}-proxy"
    run(["ip", "netns", "add", namespace])
    process: subprocess.Popen[bytes] | None = None
    try:
        in_ns(namespace, "ip", "link", "set", "lo", "up")
        run(["ip", "-n", namespace, "link", "add", "to-client", "type", "veth", "peer", "name",
             "to-proxy", "netns", lab.client])
        run(["ip", "-n", namespace, "link", "add", "to-lb", "type", "veth", "peer", "name",
             "lb-proxy", "netns", lab.lb])
        for ns, device, address in ((namespace, "to-client", PROXY_IP),
                                    (lab.client, "to-proxy", PROXY_CLIENT_SIDE_IP),
                                    (namespace, "to-lb", PROXY_LB_IP),
                                    (lab.lb, "lb-proxy", LB_PROXY_IP)):
            run(["ip", "-n", ns, "addr", "add", f"{address}/30", "dev", device])
            run(["ip", "-n", ns, "link", "set", device, "up"])
        run(["ip", "-n", namespace, "route", "add", "default", "via", LB_PROXY_IP])
        in_ns(namespace, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        config = lab.workdir / "tinyproxy.conf"
        config.write_text(
            f"User nobody\nGroup nogroup\nPort {PROXY_PORT}\nListen {PROXY_IP}\n"
            "Timeout 600\nMaxClients 16\nAllow 198.18.0.0/15\nConnectPort 80\n"
            "ConnectPort 443\nLogLevel Info\n")
        log = lab.workdir / "tinyproxy.log"
        process = _start(["ip", "netns", "exec", namespace, "tinyproxy", "-d", "-c",
                          str(config)], log)
        _wait_listening(namespace, PROXY_IP, PROXY_PORT, process, log)
        yield f"http://{PROXY_IP}:{PROXY_PORT}"
    finally:
        if process is not None:
            _stop(process)
        for pid in run(["ip", "netns", "pids", namespace], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", namespace], check=False)


@dataclass(frozen=True)
class ProbeRun:
    code: int
    stdout: str
    stderr: str

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed

    @property
    def only(self) -> dict[str, Any]:
        (result,) = self.document["results"]
        found: dict[str, Any] = result
        return found


def run_probe(lab: IncidentLab, *args: str, env: Mapping[str, str] | None = None,
              limit_s: float = 90) -> ProbeRun:
    """`kubectl keepalive probe ARGS` in the client's namespace (the plugin from this tree)."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
                   "HOME": str(lab.workdir), **(env or {})}
    done = subprocess.run(
        ["ip", "netns", "exec", lab.client, sys.executable, "-m", "kubectl_keepalive",
         "probe", *args], capture_output=True, text=True, timeout=limit_s, env=environment,
        stdin=subprocess.DEVNULL, cwd=str(lab.workdir))
    return ProbeRun(done.returncode, done.stdout, done.stderr)
