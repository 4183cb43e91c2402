"""Keep-alive HTTP(S) connections to one API server, shared by the threads of one command.

The standard library's http.client: a command makes a handful of requests to one server, and
urllib3's import took longer than they do (benchmarks/startup.py). What this keeps of what a
client library gives: one TLS context for every connection, the kubeconfig's tls-server-name
for SNI and the certificate check, http:// proxies (CONNECT for an https server or a websocket,
an absolute URL for a plain http request), idle connections reused, and an idle connection the
server has closed noticed before a request is sent on it. Timeouts apply to each connect, send
and receive, as the socket's. Errors are left to the caller: OSError (ssl.SSLError and
ProxyRefused among them) and http.client.HTTPException.
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

MAX_PROXY_ANSWER = 64 * 1024


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
        return cls(parts.scheme, parts.hostname or "", parts.port or _default_port(parts.scheme),
                   parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        """host:port, an IPv6 address in brackets (a CONNECT target)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The Host header: the port only when it is not the scheme's own."""
        if self.port == _default_port(self.scheme):
            return f"[{self.host}]" if ":" in self.host else self.host
        return self.netloc


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def proxy_authorization(proxy_url: str) -> str | None:
    """Basic credentials from a proxy URL's user:password, as a Proxy-Authorization value."""
    parts = urllib.parse.urlsplit(proxy_url)
    if parts.username is None:
        return None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class ProxyRefused(OSError):
    """The proxy answered CONNECT with a status other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the proxy answered CONNECT with {status} {reason}".rstrip())
        self.status = status


class _Connection(http.client.HTTPConnection):
    """One connection as the pool makes it: TCP to the server or the proxy, a CONNECT tunnel
    when asked (written here: http.client's drops the brackets of an IPv6 target before 3.13),
    then TLS with the pool's context and server name for an https server."""

    def __init__(self, dial: Endpoint, timeout: float | None, tunnel_to: Endpoint | None,
                 proxy_auth: str | None, context: ssl.SSLContext | None,
                 server_name: str | None) -> None:
        super().__init__(dial.host, dial.port, timeout=timeout)
        self._tunnel_to = tunnel_to
        self._proxy_auth = proxy_auth
        self._context = context
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            # Small requests go out at once, as http.client's own connect() arranges.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tunnel_to is not None:
                _open_tunnel(sock, self._tunnel_to, self._proxy_auth)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _open_tunnel(sock: socket.socket, target: Endpoint, proxy_auth: str | None) -> None:
    lines = [f"CONNECT {target.netloc} HTTP/1.1", f"Host: {target.netloc}"]
    if proxy_auth:
        lines.append(f"Proxy-Authorization: {proxy_auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    answer = b""
    while b"\r\n\r\n" not in answer:  # a proxy says nothing more until the client speaks
        if len(answer) > MAX_PROXY_ANSWER:
            raise ProxyRefused(0, "(an answer too long to be one)")
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("the proxy closed the connection after CONNECT")
        answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 200:
        raise ProxyRefused(status, parts[2] if len(parts) > 2 else status_line[:80])


class HttpPool:
    """Connections to one server, made as needed and kept while the server keeps them."""

    def __init__(self, server: str, context: ssl.SSLContext | None,
                 server_name: str | None = None,
                 proxy_url: str | None = None, maxsize: int = 32) -> None:
        self.server = Endpoint.parse(server)
        self._context = context if self.server.scheme == "https" else None
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
        conn.putrequest(method, self._target(path), skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self.server.host_header)
        for name, value in headers:
            conn.putheader(name, value)
        if self._proxy_auth and self._forwarded:
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

    @property
    def _forwarded(self) -> bool:
        """Plain http through a proxy: requests go to the proxy with absolute URLs."""
        return self._proxy is not None and self.server.scheme == "http"

    def _target(self, path: str) -> str:
        target = self.server.prefix + path
        if self._forwarded:
            return f"http://{self.server.netloc}{target}"
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
        assert sock is not None
        return sock

    def _new(self, timeout: float | None, tunnel: bool = False) -> _Connection:
        """A connection not yet opened. Through a proxy, an https server (or a websocket)
        gets a CONNECT tunnel; a plain http request is forwarded by absolute URL."""
        through = self._proxy is not None and (tunnel or self.server.scheme == "https")
        return _Connection(self._proxy or self.server, timeout,
                           self.server if through else None, self._proxy_auth,
                           self._context, self._server_name)

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
        poller = select.poll()  # not select(): it fails for descriptors above 1023
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False
