"""Keep-alive HTTP(S) connections to one API server, shared by the threads of one command.

The standard library's http.client: a command makes a handful of requests to one server, and
urllib3's import took longer than they do (benchmarks/startup.py). What this keeps of what a
client library gives: one TLS context for every connection, the kubeconfig's tls-server-name
for SNI and the certificate check, http:// proxies (CONNECT for an https server, an absolute
URL for an http one), idle connections reused, and an idle connection the server has closed
noticed before a request is sent on it. Errors are left to the caller: OSError (ssl.SSLError
among them) and http.client.HTTPException.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True)
class Endpoint:
    """Where one URL's requests go: scheme, host, port, and the server URL's path prefix."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urllib.parse.urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname or "", parts.port or default,
                   parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def proxy_authorization(proxy_url: str) -> str | None:
    """Basic credentials from a proxy URL's user:password, as a Proxy-Authorization value."""
    parts = urllib.parse.urlsplit(proxy_url)
    if parts.username is None:
        return None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class _TLSConnection(http.client.HTTPConnection):
    """HTTPS with a given context and server name; through a proxy, TLS starts after CONNECT."""

    default_port = 443

    def __init__(self, host: str, port: int, timeout: float | None,
                 context: ssl.SSLContext | None, server_name: str) -> None:
        super().__init__(host, port, timeout=timeout)
        self._context = context
        self._server_name = server_name

    def connect(self) -> None:
        super().connect()  # TCP, and the CONNECT tunnel when set
        if self._context is None:
            raise ValueError("an https server needs a TLS context")
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


class HttpPool:
    """Connections to one server, made as needed and kept while the server keeps them."""

    def __init__(self, server: str, context: ssl.SSLContext | None,
                 server_name: str | None = None,
                 proxy_url: str | None = None, maxsize: int = 32) -> None:
        self.server = Endpoint.parse(server)
        self._context = context
        self._server_name = server_name or self.server.host
        self._proxy = Endpoint.parse(proxy_url) if proxy_url else None
        self._proxy_auth = proxy_authorization(proxy_url) if proxy_url else None
        self._maxsize = maxsize
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        # A pool dropped without close() (a test's cluster, a rebuilt TLS pool) closes its
        # sockets rather than leave them to the collector.
        weakref.finalize(self, _close_all, self._idle)

    def request(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes | None, timeout: float | None) -> tuple[int, bytes]:
        """(status, body) of one request; `path` includes its query. A GET that fails on a
        reused connection (the server closed it meanwhile) is sent once more on a new one."""
        conn, reused = self._take(timeout)
        try:
            return self._exchange(conn, method, path, headers, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if not reused or method != "GET":
                raise
        except BaseException:
            conn.close()
            raise
        conn = self._new(timeout)
        try:
            return self._exchange(conn, method, path, headers, body)
        except BaseException:
            conn.close()
            raise

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str,
                  headers: list[tuple[str, str]], body: bytes | None) -> tuple[int, bytes]:
        conn.putrequest(method, self._target(path), skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if self._proxy_auth and self.server.scheme == "http":  # https: sent with CONNECT
            conn.putheader("Proxy-Authorization", self._proxy_auth)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return response.status, data

    def _target(self, path: str) -> str:
        target = self.server.prefix + path
        if self._proxy and self.server.scheme == "http":
            return f"http://{self.server.netloc}{target}"  # a forwarding proxy needs the URL
        return target

    def _take(self, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new(timeout), False
            if _still_open(conn):
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn, True
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def open_socket(self, timeout: float | None) -> socket.socket:
        """A connected socket to the server (TLS done, through the proxy's tunnel when there
        is one) for a websocket: the same route as every REST request."""
        conn = self._new(timeout, tunnel=True)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        sock, conn.sock = conn.sock, None  # the socket is the caller's now
        return sock

    def _new(self, timeout: float | None, tunnel: bool = False) -> http.client.HTTPConnection:
        """A connection not yet opened. Through a proxy, an https server (or a websocket)
        gets a CONNECT tunnel; a plain http request is forwarded by absolute URL."""
        dial = self._proxy or self.server
        conn: http.client.HTTPConnection
        if self.server.scheme == "https":
            conn = _TLSConnection(dial.host, dial.port, timeout, self._context,
                                  self._server_name)
        else:
            conn = http.client.HTTPConnection(dial.host, dial.port, timeout=timeout)
        if self._proxy and (tunnel or self.server.scheme == "https"):
            auth = {"Proxy-Authorization": self._proxy_auth} if self._proxy_auth else None
            conn.set_tunnel(self.server.host, self.server.port, headers=auth)
        return conn

    def close(self) -> None:
        with self._lock:
            _close_all(self._idle)


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    while connections:
        connections.pop().close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection has nothing to read; readable means the server closed it
    (or broke the protocol): either way it cannot carry the next request."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
