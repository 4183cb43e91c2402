"""A hostile Kubernetes API server on loopback, written for the wire tier's hostile cases.

It speaks just enough of the API for `status`, `doctor` and `enable` to reach one gateway pod
(a pods list, a deployments list, empty lists elsewhere, 404 for single objects, the pod's
port-forward and exec websockets with the `v4.channel.k8s.io` framing, a real Envoy config dump
from tests/golden behind the port-forward), on raw sockets, so that each case can replace one
answer with a misbehaving one: trickled, flooded, redirected, oversized, malformed, or full of
control characters. TLS with a certificate the test makes, when asked. Every connection runs in
a daemon thread that stop() ends by closing its socket; stop() waits for them, bounded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DUMP = REPO / "tests" / "golden" / "ingressgateway-8080-off" / "config_dump.json"
NAMESPACE = "istio-system"
GATEWAY = "istio-ingressgateway"
POD = f"{GATEWAY}-aaaa1-0"
LABELS = {"app": GATEWAY, "istio": "ingressgateway"}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Bytes a server may send that must never reach the terminal raw: ESC (cursor and colour
# control, OSC title changes), a bare CR that rewrites the line, BEL, a bidi override.
HOSTILE = "\x1b[2J\x1b]0;owned\x07\r\u202e"
CONTROL_BYTES = (b"\x1b", b"\x07", b"\r", "\u202e".encode())


class Closed(Exception):
    """The client went away (or the server is stopping)."""


@dataclass
class Request:
    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]


Handler = Callable[["Conn", Request], bool]  # returns whether to keep the connection


class Conn:
    """One accepted connection: buffered reads, writes that notice a stopping server."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping
        self.buffer = b""

    def recv_some(self) -> None:
        if self.stopping.is_set():
            raise Closed
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            raise Closed from None
        if not chunk:
            raise Closed
        self.buffer += chunk

    def read_until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        while marker not in self.buffer:
            if len(self.buffer) > limit:
                raise Closed
            self.recv_some()
        end = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.recv_some()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send(self, data: bytes) -> None:
        if self.stopping.is_set():
            raise Closed
        try:
            self.sock.sendall(data)
        except OSError:
            raise Closed from None

    def trickle(self, data: bytes, pause: float) -> None:
        """One byte at a time, `pause` seconds apart, until done or the client is gone."""
        for index in range(len(data)):
            self.send(data[index:index + 1])
            if self.stopping.wait(pause):
                raise Closed


def http_answer(status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
                content_type: str = "application/json") -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body  # raw UTF-8, as a server may


def json_answer(status: int, document: Any) -> bytes:
    return http_answer(status, json.dumps(document).encode())


def status_body(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "code": code}


# -- the objects of one gateway ----------------------------------------------------------------


def gateway_pod() -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": POD,
                     "labels": {**LABELS, "pod-template-hash": "aaaa1"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": f"{GATEWAY}-aaaa1"}]},
        "spec": {"containers": [{"name": "istio-proxy", "args": ["proxy", "router"]}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def gateway_deployment() -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": GATEWAY, "generation": 1, "uid": "u1"},
        "spec": {"replicas": 1, "selector": {"matchLabels": dict(LABELS)},
                 "template": {"metadata": {"labels": dict(LABELS)}}},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                   "availableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "True"}]},
    }


def a_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": list(items)}


# -- websockets, server side -------------------------------------------------------------------


def ws_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    first = (0x80 if final else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack(">BB", first, size)
    elif size < 1 << 16:
        head = struct.pack(">BBH", first, 126, size)
    else:
        head = struct.pack(">BBQ", first, 127, size)
    return head + payload


def ws_binary(channel: int, payload: bytes) -> bytes:
    return ws_frame(0x2, bytes([channel]) + payload)


def ws_close() -> bytes:
    return ws_frame(0x8, struct.pack(">H", 1000))


def read_client_frame(conn: Conn) -> tuple[int, bytes]:
    first, second = conn.read_exact(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack(">H", conn.read_exact(2))
    elif size == 127:
        (size,) = struct.unpack(">Q", conn.read_exact(8))
    mask = conn.read_exact(4)
    data = conn.read_exact(size)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def accept_upgrade(conn: Conn, request: Request) -> None:
    key = request.headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    conn.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               f"Sec-WebSocket-Accept: {accept}\r\n"
               "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())


PortForwardAnswer = Callable[[str], bytes]  # admin path -> the whole HTTP answer


def admin_answer(body: bytes) -> PortForwardAnswer:
    return lambda _path: http_answer(200, body)


def golden_admin(path: str) -> bytes:
    if path.startswith("/config_dump") or path.startswith("/stats"):
        return http_answer(200, GOLDEN_DUMP.read_bytes() if path.startswith("/config_dump")
                           else b"", content_type="text/plain")
    return http_answer(404, b"not found", content_type="text/plain")


def serve_port_forward(conn: Conn, answer: PortForwardAnswer,
                       error_text: bytes | None = None, piece: int = 1 << 20) -> None:
    """Port 15000's two channels open with the port number; each admin GET that arrives on
    the data channel is answered by `answer`, split into frames of `piece` bytes; with
    `error_text`, the error channel says it instead and the stream closes."""
    port = struct.pack("<H", 15000)
    conn.send(ws_binary(0, port) + ws_binary(1, port))
    if error_text is not None:
        read_client_frame(conn)  # the admin GET, read: closing on it unread would reset
        conn.send(ws_binary(1, error_text) + ws_close())
        with contextlib.suppress(Closed):
            while read_client_frame(conn)[0] != 0x8:
                pass
        return
    pending = b""
    while True:
        opcode, data = read_client_frame(conn)
        if opcode == 0x8:
            conn.send(ws_close())
            return
        if opcode != 0x2 or not data:
            continue
        pending += data[1:]
        while b"\r\n\r\n" in pending:
            head, _, pending = pending.partition(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            whole = answer(path)
            for start in range(0, len(whole), piece):
                conn.send(ws_binary(0, whole[start:start + piece]))
            if b"connection: close" in head.lower():
                conn.send(ws_close())
                return


def serve_exec(conn: Conn, stdout: bytes = b"", stderr: bytes = b"",
               status: dict[str, Any] | None = None, piece: int = 1 << 20) -> None:
    for start in range(0, len(stdout), piece):
        conn.send(ws_binary(1, stdout[start:start + piece]))
    if stderr:
        conn.send(ws_binary(2, stderr))
    conn.send(ws_binary(3, json.dumps(status or {"status": "Success"}).encode()))
    conn.send(ws_close())


# -- the server --------------------------------------------------------------------------------


@dataclass
class HostileApi:
    """The API server. `handlers` maps a route kind (pods, deployments, envoyfilters,
    create-envoyfilter, portforward, exec, other) to a replacement answer."""

    tls: ssl.SSLContext | None = None
    handlers: dict[str, Handler] = field(default_factory=dict)
    port: int = 0
    seen: list[Request] = field(default_factory=list)
    _listener: socket.socket | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _socks: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> HostileApi:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        self._listener.settimeout(0.2)  # looks at the stop event between waits
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            self._socks.append(sock)
            self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(10)
                sock = self.tls.wrap_socket(sock, server_side=True)
                self._socks.append(sock)
                sock.settimeout(None)
            conn = Conn(sock, self._stopping)
            while self._one(conn):
                pass
        except (Closed, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _one(self, conn: Conn) -> bool:
        head = conn.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = conn.read_exact(int(headers.get("content-length", "0") or 0))
        request = Request(method, path, headers, body)
        self.seen.append(request)
        kind = route_kind(request)
        handler = self.handlers.get(kind) or DEFAULTS.get(kind) or default_other
        return handler(conn, request)

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        for sock in list(self._socks):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        assert not any(t.is_alive() for t in self._threads), "a server thread did not end"


def route_kind(request: Request) -> str:
    route = request.route
    if route.endswith("/portforward"):
        return "portforward"
    if route.endswith("/exec"):
        return "exec"
    if route.endswith("/pods"):
        return "pods"
    if route.endswith("/deployments"):
        return "deployments"
    if route.endswith("/envoyfilters"):
        return "create-envoyfilter" if request.method == "POST" else "envoyfilters"
    return "other"


def default_pods(conn: Conn, _request: Request) -> bool:
    conn.send(json_answer(200, a_list(gateway_pod())))
    return True


def default_deployments(conn: Conn, _request: Request) -> bool:
    conn.send(json_answer(200, a_list(gateway_deployment())))
    return True


def default_other(conn: Conn, request: Request) -> bool:
    """Lists are empty; a single object is not found; a write is refused."""
    if request.method != "GET":
        conn.send(json_answer(403, status_body(403, "forbidden")))
    elif request.route.rstrip("/").rsplit("/", 1)[-1].endswith("s"):
        conn.send(json_answer(200, a_list()))
    else:
        conn.send(json_answer(404, status_body(404, "not found")))
    return True


def default_port_forward(conn: Conn, request: Request) -> bool:
    accept_upgrade(conn, request)
    serve_port_forward(conn, golden_admin)
    return False


def default_exec(conn: Conn, request: Request) -> bool:
    accept_upgrade(conn, request)
    serve_exec(conn, stdout=b"")
    return False


DEFAULTS: dict[str, Handler] = {"pods": default_pods, "deployments": default_deployments,
                                "portforward": default_port_forward, "exec": default_exec}


# -- the test's side: certificates, kubeconfig, running the plugin ------------------------------


def make_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 from a CA made here; the CA's file."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=hostile-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=hostile-api")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.crt", folder / "server.key")
    return context, folder / "ca.crt"


def write_kubeconfig(folder: Path, server: str, ca: Path | None = None,
                     proxy_url: str | None = None) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    if proxy_url is not None:
        cluster["proxy-url"] = proxy_url
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "hostile",
        "clusters": [{"name": "hostile", "cluster": cluster}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "hostile", "context": {"cluster": "hostile", "user": "nobody",
                                                      "namespace": NAMESPACE}}],
    }
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass(frozen=True)
class Run:
    code: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def text(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", errors="replace")

    def lines(self) -> list[str]:
        return self.text.splitlines()


PLUGIN = REPO / ".venv" / "bin" / "kubectl-keepalive"


def run_plugin(kubeconfig: Path, *args: str, limit: float = 60.0) -> Run:
    """The installed plugin in a process of its own, killed (by its pid) past `limit`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(kubeconfig.parent),
           "KUBECONFIG": str(kubeconfig), "LANG": "C.UTF-8"}
    started = time.monotonic()
    process = subprocess.Popen([str(PLUGIN), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=10)
        raise AssertionError(f"the plugin ran past {limit}s: {err[-2000:]!r}") from None
    return Run(process.returncode, out, err, time.monotonic() - started)


def assert_clean(run: Run, longest_line: int) -> None:
    """No raw control byte from a server on either stream, no line past the cut, no
    traceback."""
    for stream in (run.stdout, run.stderr):
        for byte in CONTROL_BYTES:
            assert byte not in stream, f"{byte!r} reached the terminal: {stream[-500:]!r}"
    too_long = [line[:120] for line in run.lines() if len(line) > longest_line]
    assert not too_long, f"lines past {longest_line} characters: {too_long}"
    assert "Traceback" not in run.text


@contextlib.contextmanager
def hostile_api(tls: ssl.SSLContext | None = None,
                **handlers: Handler) -> Iterator[HostileApi]:
    server = HostileApi(tls=tls, handlers={k.replace("_", "-"): v for k, v in handlers.items()})
    server.start()
    try:
        yield server
    finally:
        server.stop()
