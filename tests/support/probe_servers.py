"""Loopback servers for `probe`'s unit tests: an HTTP/1.1 keep-alive server whose behaviour
after the first answer is chosen (answer again, close, reset, stay silent, lie), a CONNECT
proxy, and a throwaway PKI made by the openssl command. Every thread is bounded and stopped."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.support.shuttle import shuttle

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path, name: str) -> Path:
    """ca.crt and server.crt/server.key for DNS `name` in `folder`."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=probe-test-ca", cwd=folder)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", f"/CN={name}", cwd=folder)
    (folder / "server.ext").write_text(f"subjectAltName=DNS:{name}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
            cwd=folder)
    return folder


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data


class HoldServer:
    """Answers the first request with `first`; then, on the next request, `then`:
    "answer" (with `second`), "silent" (reads and never answers), or after `after_s` of idleness
    "close" (FIN) or "reset" (RST). `keepalive` = (idle, interval, count) on accepted sockets."""

    def __init__(self, then: str = "answer", first: bytes = OK, after_s: float = 0.3,
                 second: bytes = OK,
                 keepalive: tuple[int, int, int] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.then, self.first, self.after_s, self.second = then, first, after_s, second
        self.keepalive, self.tls = keepalive, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)  # here: the thread may start after the test closed it
        self.port: int = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HoldServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(10)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        conn = raw
        try:
            raw.settimeout(30)
            if self.keepalive:
                idle, interval, count = self.keepalive
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
            if self.tls is not None:
                conn = self.tls.wrap_socket(raw, server_side=True)
            self.requests.append(_read_request(conn))
            conn.sendall(self.first)
            if self.then in ("close", "reset"):
                self._stop.wait(self.after_s)
                if self.then == "reset":
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            request = _read_request(conn)
            self.requests.append(request)
            if self.then == "answer" and request:
                conn.sendall(self.second)
                _read_request(conn)  # until the client goes
            elif self.then == "silent":
                self._stop.wait(30)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


@contextlib.contextmanager
def connect_proxy(answer: bytes | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """A stand-in CONNECT proxy on loopback for the unit tier (the netns tier runs the real
    tinyproxy): (its port, the CONNECT heads it got). With `answer`, it sends that instead of
    tunnelling."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    heads: list[bytes] = []
    stop = threading.Event()

    def one(client: socket.socket) -> None:
        # Whatever the probe or the test does to the sockets, this thread ends quietly.
        with contextlib.suppress(OSError, ValueError, IndexError), client:
            head = _read_request(client)
            heads.append(head)
            if answer is not None:
                client.sendall(answer)
                return
            authority = head.split(b" ")[1].decode()
            host, _, port = authority.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as up:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                shuttle(client, up, stop)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=one, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], heads
    finally:
        stop.set()
        listener.close()
        thread.join(10)
