"""Keep-alive HTTP(S) connections to one API server, shared by the threads of one command.

The standard library's http.client: a command makes a handful of requests to one server, and
urllib3's import took longer than they do (benchmarks/startup.py). What this keeps of what a
client library gives: one TLS context for every connection, the kubeconfig's tls-server-name
for SNI and the certificate check, proxies (http:// and https://: CONNECT for an https server or
a websocket, an absolute URL for a plain http request; socks5://: a tunnel for everything; the
hops themselves are `tunnels`), idle connections reused, and an idle connection the server has
closed noticed before a request is sent on it.

A request's timeout bounds the whole request, as Go's http.Client.Timeout does: connect, the
proxy's CONNECT, TLS, sending, the answer's head and body, and the second try on a new connection
share one deadline, so a server that trickles its answer cannot stretch it. Every answer has a
size bound, checked against Content-Length before anything is read and against what arrives
while it is read: memory stays a small multiple of the bound. A redirect is never followed (the
token would go wherever it points). Errors are left to the caller: OSError (socket.timeout,
ssl.SSLError, tunnels.ProxyRefused and tunnels.SocksRefused among them),
http.client.HTTPException, AnswerTooLarge and Redirected.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import select
import socket
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubectl_keepalive.kube.client import tunnels
from kubectl_keepalive.kube.client.tunnels import time_left

if TYPE_CHECKING:
    import ssl

MAX_ANSWER = 64 * 1024 * 1024  # one API answer: far above a list of thousands of pods
_READ_SIZE = 1024 * 1024


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
    """The port a URL without one means: SOCKS5's is 1080, as in Go's net/http."""
    if scheme in ("socks5", "socks5h"):
        return 1080
    return 443 if scheme in ("https", "wss") else 80


def proxy_authorization(proxy_url: str) -> str | None:
    """Basic credentials from a proxy URL's user:password, as a Proxy-Authorization value."""
    credentials = tunnels.user_info(proxy_url)
    if credentials is None:
        return None
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class AnswerTooLarge(Exception):
    """An answer longer than the bound: announced by Content-Length or seen while reading."""

    def __init__(self, limit: int, announced: int | None) -> None:
        said = f" (it announced {announced} bytes)" if announced is not None else ""
        super().__init__(f"an answer larger than {size_text(limit)}{said}")
        self.limit = limit


class Redirected(Exception):
    """The server answered with a redirect (3xx), which is never followed."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"a redirect ({status}) to {location or '(no Location)'}")
        self.status = status
        self.location = location


def size_text(size: int) -> str:
    """A byte count as a person reads it: whole MiB or GiB when it is one."""
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


class _DeadlineReads(io.RawIOBase):
    """A socket's reads for http.client, each given only the time left until the deadline.
    Through the socket's own file, which keeps the socket open while an answer is read after
    http.client closed its connection (an answer that ends with the connection)."""

    def __init__(self, sock: socket.socket, conn: _Connection) -> None:
        super().__init__()
        self._sock = sock
        self._file = sock.makefile("rb", buffering=0)
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        self._sock.settimeout(time_left(self._conn.deadline))
        return self._file.readinto(target) or 0

    def close(self) -> None:
        self._file.close()
        super().close()


class _SocketShim:
    """What http.client.HTTPResponse takes of a socket: makefile(), here under the deadline."""

    def __init__(self, sock: socket.socket, conn: _Connection) -> None:
        self._reads = _DeadlineReads(sock, conn)

    def makefile(self, *_args: Any, **_kwargs: Any) -> Any:
        return io.BufferedReader(self._reads)


def _bounded_response(sock: socket.socket, *args: Any, conn: _Connection,
                      **kwargs: Any) -> http.client.HTTPResponse:
    return http.client.HTTPResponse(_SocketShim(sock, conn), *args,  # type: ignore[arg-type]
                                    **kwargs)


@dataclass(frozen=True)
class ProxyRoute:
    """A proxy as the pool uses it: where it is, the Proxy-Authorization it gets (http and
    https proxies; SOCKS5 takes its user info in the handshake), and for an https:// proxy the
    TLS context and the name its certificate must carry."""

    url: str
    endpoint: Endpoint
    authorization: str | None
    context: ssl.SSLContext | None
    server_name: str

    @property
    def socks(self) -> bool:
        return self.endpoint.scheme in ("socks5", "socks5h")


def proxy_route(proxy_url: str, server_context: ssl.SSLContext | None,
                tls_server_name: str | None) -> ProxyRoute:
    """The route through `proxy_url`. As Go's net/http, TLS to an https proxy takes the API
    server's TLS settings when the server is https (CA, client certificate, tls-server-name),
    else the system's CAs and the proxy's own name."""
    endpoint = Endpoint.parse(proxy_url)
    context: ssl.SSLContext | None = None
    if endpoint.scheme == "https":
        if server_context is None:
            import ssl

            server_context, tls_server_name = ssl.create_default_context(), None
        context = server_context
    socks = endpoint.scheme in ("socks5", "socks5h")
    return ProxyRoute(proxy_url, endpoint, None if socks else proxy_authorization(proxy_url),
                      context, tls_server_name or endpoint.host)


class _Connection(http.client.HTTPConnection):
    """One connection as the pool makes it: TCP to the server or the proxy; through the proxy,
    TLS to it (https://), then a CONNECT tunnel when asked, or the SOCKS5 handshake; then TLS
    with the pool's context and server name for an https server (inside the proxy's TLS when
    there is one). Every step, and each request's send and answer, runs within `deadline`
    (None: no bound)."""

    def __init__(self, dial: Endpoint, deadline: float | None, tunnel_to: Endpoint | None,
                 proxy: ProxyRoute | None, context: ssl.SSLContext | None,
                 server_name: str | None) -> None:
        super().__init__(dial.host, dial.port)
        self.deadline = deadline
        self._tunnel_to = tunnel_to
        self._proxy = proxy
        self._context = context
        self._server_name = server_name
        self.response_class = functools.partial(_bounded_response, conn=self)  # type: ignore

    def connect(self) -> None:
        try:
            sock: Any = socket.create_connection((self.host, self.port),
                                                 time_left(self.deadline))
        except OSError as exc:
            raise self._at_proxy(exc) from None
        try:
            # Small requests go out at once, as http.client's own connect() arranges.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock = self._through_proxy(sock)
            except OSError as exc:
                raise self._at_proxy(exc) from None
            if self._context is not None:
                # The handshake keeps one deadline over all its reads (CPython's ssl module).
                sock.settimeout(time_left(self.deadline))
                if self._proxy is not None and self._proxy.context is not None:
                    from kubectl_keepalive.kube.client.nested_tls import NestedTls

                    sock = NestedTls(sock, self._context, self._server_name)
                    sock.do_handshake()
                else:
                    sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def _at_proxy(self, exc: OSError) -> OSError:
        """A failure on the way through the proxy, naming it (as kubectl's "proxyconnect"
        does) unless the error already does; the API server's own errors as they are."""
        if self._proxy is None or isinstance(exc, tunnels.NAMES_THE_PROXY):
            return exc
        return tunnels.ProxyHopError(self._proxy.endpoint.netloc, exc)

    def _through_proxy(self, sock: Any) -> Any:
        """`sock`, connected to the proxy (if any), made a way to the server."""
        proxy, target = self._proxy, self._tunnel_to
        if proxy is None:
            return sock
        if proxy.context is not None:
            sock = tunnels.tls_to_proxy(sock, proxy.context, proxy.server_name, self.deadline,
                                        proxy.endpoint.netloc)
        if target is None:  # a plain http request, forwarded by absolute URL
            return sock
        to = tunnels.Target(target.host, target.port)
        if proxy.socks:
            tunnels.socks5_connect(sock, proxy.url, to, self.deadline)
        else:
            tunnels.connect_tunnel(sock, to, proxy.authorization, self.deadline,
                                   proxy.endpoint.netloc)
        return sock

    def send(self, data: Any) -> None:
        if self.sock is not None:  # sendall keeps one deadline over the whole buffer
            self.sock.settimeout(time_left(self.deadline))
        super().send(data)


class HttpPool:
    """Connections to one server, made as needed and kept while the server keeps them."""

    def __init__(self, server: str, context: ssl.SSLContext | None,
                 server_name: str | None = None,
                 proxy_url: str | None = None, maxsize: int = 32) -> None:
        self.server = Endpoint.parse(server)
        self._context = context if self.server.scheme == "https" else None
        self._server_name = server_name or self.server.host
        self._proxy = proxy_route(proxy_url, self._context, server_name) if proxy_url else None
        self._maxsize = maxsize
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        # A pool dropped without close() (a test's cluster, a rebuilt TLS pool) closes its
        # sockets rather than leave them to the collector.
        weakref.finalize(self, _close_all, self._idle)

    def request(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes | None, timeout: float | None,
                limit: int = MAX_ANSWER) -> tuple[int, bytes]:
        """(status, body) of one request within `timeout` in all; `path` includes its query.
        A GET that fails on a reused connection (the server closed it meanwhile) is sent once
        more on a new one, within the same time."""
        deadline = deadline_after(timeout)
        conn, reused = self._take(deadline)
        try:
            return self._exchange(conn, method, path, headers, body, limit)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if not reused or method != "GET":
                raise
        except BaseException:
            conn.close()
            raise
        conn = self._new(deadline)
        try:
            return self._exchange(conn, method, path, headers, body, limit)
        except BaseException:
            conn.close()
            raise

    def _exchange(self, conn: _Connection, method: str, path: str,
                  headers: list[tuple[str, str]], body: bytes | None,
                  limit: int) -> tuple[int, bytes]:
        conn.putrequest(method, self._target(path), skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self.server.host_header)
        for name, value in headers:
            conn.putheader(name, value)
        if self._forwarded and self._proxy is not None and self._proxy.authorization:
            conn.putheader("Proxy-Authorization", self._proxy.authorization)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        if 300 <= response.status < 400:
            conn.close()  # its body is not wanted: the connection goes with it
            raise Redirected(response.status, response.getheader("Location") or "")
        data = read_bounded(response, limit)
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return response.status, data

    @property
    def _forwarded(self) -> bool:
        """Plain http through an http(s) proxy: requests go to the proxy with absolute URLs
        (a SOCKS5 proxy tunnels everything)."""
        return self._proxy is not None and not self._proxy.socks and self.server.scheme == "http"

    def _target(self, path: str) -> str:
        target = self.server.prefix + path
        if self._forwarded:
            return f"http://{self.server.netloc}{target}"
        return target

    def _take(self, deadline: float | None) -> tuple[_Connection, bool]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new(deadline), False
            if _still_open(conn):
                conn.deadline = deadline
                return conn, True
            conn.close()

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self._maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def open_socket(self, deadline: float | None) -> socket.socket:
        """A connected socket to the server (TLS done, through the proxy's tunnel when there
        is one) for a websocket, by `deadline`: the same route as every REST request."""
        conn = self._new(deadline, tunnel=True)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        sock, conn.sock = conn.sock, None  # the socket is the caller's now
        assert sock is not None
        return sock

    def _new(self, deadline: float | None, tunnel: bool = False) -> _Connection:
        """A connection not yet opened. Through a proxy, an https server (or a websocket)
        gets a tunnel; a plain http request is forwarded by absolute URL, except through
        SOCKS5, which tunnels every connection."""
        proxy = self._proxy
        if proxy is None:
            return _Connection(self.server, deadline, None, None, self._context,
                               self._server_name)
        through = tunnel or self.server.scheme == "https" or proxy.socks
        return _Connection(proxy.endpoint, deadline, self.server if through else None, proxy,
                           self._context, self._server_name)

    def close(self) -> None:
        with self._lock:
            _close_all(self._idle)


def read_bounded(response: http.client.HTTPResponse, limit: int) -> bytes:
    """The whole body, at most `limit` bytes: an announced length above it is refused before
    anything is read (no buffer of that size is ever asked for), an endless body once it
    passes it. Pieces joined once at the end: memory twice what was read at most."""
    if response.length is not None and response.length > limit:
        raise AnswerTooLarge(limit, response.length)
    parts: list[bytes] = []
    size = 0
    while True:
        piece = response.read(min(_READ_SIZE, limit + 1 - size))  # one byte past: too large
        if not piece:
            return b"".join(parts)
        size += len(piece)
        if size > limit:
            raise AnswerTooLarge(limit, None)
        parts.append(piece)


def _close_all(connections: list[_Connection]) -> None:
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
