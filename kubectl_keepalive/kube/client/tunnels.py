"""Through a proxy to the API server, on a socket already connected to the proxy.

The three kinds kubectl accepts in `proxy-url` (and in HTTPS_PROXY): `http://` (CONNECT),
`https://` (TLS to the proxy, then CONNECT inside it) and `socks5://` (RFC 1928, names resolved
by the proxy as Go's dialer leaves them, user:password by RFC 1929). As in Go's net/http, TLS to
an https proxy uses the API server's own TLS settings: its CA (else the system's), its client
certificate if the proxy asks for one, and `tls-server-name` when set (else the proxy's host).

Every step runs within the caller's deadline, however the proxy trickles its answers; what a
proxy says is bounded in size and escaped before it reaches a message.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.terminal import safe

if TYPE_CHECKING:
    import ssl

MAX_PROXY_ANSWER = 64 * 1024
# SOCKS5 replies that say the target could not be reached (general failure, network or host
# unreachable, connection refused, TTL expired): they may pass, as a proxy's 5xx may.
_SOCKS_PASSING = frozenset({1, 3, 4, 5, 6})


class ProxyRefused(OSError):
    """The proxy answered CONNECT with a status other than 200, or with more than an answer."""

    def __init__(self, status: int, reason: str, proxy: str = "") -> None:
        where = f"the proxy {proxy}" if proxy else "the proxy"
        super().__init__(f"{where} answered CONNECT with {status} {safe(reason)}".rstrip())
        self.status = status


class SocksRefused(OSError):
    """The SOCKS5 proxy refused the credentials or the connection, or broke the protocol."""

    def __init__(self, reason: str, code: int | None = None, proxy: str = "") -> None:
        where = f"the SOCKS5 proxy {proxy}" if proxy else "the SOCKS5 proxy"
        super().__init__(f"{where} refused: {safe(reason)}")
        self.code = code

    @property
    def passing(self) -> bool:
        return self.code in _SOCKS_PASSING


class ProxyCertificateError(OSError):
    """The https:// proxy's certificate failed the check (the API server's CA and name rules,
    as in Go): it will not pass by itself."""

    def __init__(self, proxy: str, reason: str, checked_as: str = "") -> None:
        # Go checks an https proxy's certificate with the API server's tls-server-name too.
        name = f" (checked as {checked_as}, the tls-server-name)" if checked_as else ""
        super().__init__(f"TLS with the proxy {proxy}{name} failed: {safe(reason)}")


class ProxyHopError(OSError):
    """Reaching or talking to the proxy failed (refused, reset, timed out, TLS): the proxy is
    named; whether it may pass by itself is its cause's."""

    def __init__(self, proxy: str, cause: OSError) -> None:
        said = safe(str(cause)) or type(cause).__name__
        super().__init__(f"the proxy {proxy}: {said}")
        self.cause = cause


# The errors that name the proxy themselves.
NAMES_THE_PROXY = (ProxyRefused, SocksRefused, ProxyCertificateError, ProxyHopError)


@dataclass(frozen=True)
class Target:
    """Where the tunnel leads: the API server's host (a name, or an address) and port."""

    host: str
    port: int

    @property
    def netloc(self) -> str:
        """host:port, an IPv6 address in brackets (a CONNECT target)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def time_left(deadline: float | None) -> float | None:
    """The time until `deadline` for the next socket operation; socket.timeout once it passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("timed out")
    return left


def user_info(proxy_url: str) -> tuple[str, str] | None:
    """(user, password) of a proxy URL, percent-decoded; None without user info."""
    parts = urllib.parse.urlsplit(proxy_url)
    if parts.username is None:
        return None
    return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def connect_tunnel(sock: socket.socket, target: Target, proxy_auth: str | None,
                   deadline: float | None, proxy: str = "") -> None:
    """HTTP CONNECT to `target` (written here: http.client's drops the brackets of an IPv6
    target before 3.13); ProxyRefused unless the proxy answers 200. On failure `sock` is
    closed, as the SOCKS5 library closes its own (the caller may hold only the socket the TLS
    wrapper detached)."""
    try:
        _connect_tunnel(sock, target, proxy_auth, deadline, proxy)
    except BaseException:
        sock.close()
        raise


def _connect_tunnel(sock: socket.socket, target: Target, proxy_auth: str | None,
                    deadline: float | None, proxy: str) -> None:
    lines = [f"CONNECT {target.netloc} HTTP/1.1", f"Host: {target.netloc}"]
    if proxy_auth:
        lines.append(f"Proxy-Authorization: {proxy_auth}")
    sock.settimeout(time_left(deadline))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    answer = bytearray()
    while b"\r\n\r\n" not in answer:  # a proxy says nothing more until the client speaks
        if len(answer) > MAX_PROXY_ANSWER:
            raise ProxyRefused(0, "(an answer too long to be one)", proxy)
        sock.settimeout(time_left(deadline))  # a trickled answer ends at the deadline too
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("the proxy closed the connection after CONNECT")
        answer += chunk
    status_line = bytes(answer.split(b"\r\n", 1)[0]).decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 200:
        raise ProxyRefused(status, parts[2] if len(parts) > 2 else status_line[:80], proxy)
    surplus = len(answer) - answer.index(b"\r\n\r\n") - 4
    if surplus:
        # The server speaks only after the client (TLS, an HTTP request): these bytes are the
        # proxy's. Dropped, they would leave the handshake waiting for the deadline.
        raise ProxyRefused(status, f"and then {surplus} bytes before the server could speak",
                           proxy)


def tls_to_proxy(sock: socket.socket, context: ssl.SSLContext, server_name: str,
                 deadline: float | None, proxy: str = "") -> ssl.SSLSocket:
    """TLS with the https:// proxy at `proxy` (host:port), its certificate checked for
    `server_name`; the handshake keeps one deadline over all its reads."""
    import ssl

    sock.settimeout(time_left(deadline))
    try:
        return context.wrap_socket(sock, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        host = proxy.rpartition(":")[0].strip("[]") if proxy else server_name
        raise ProxyCertificateError(proxy or server_name, exc.verify_message or str(exc),
                                    server_name if server_name != host else "") from None


class _DeadlineSocket:
    """The socket python-socks speaks SOCKS5 on: each send and receive gets only the time left
    until the deadline, so that a proxy answering byte by byte cannot stretch the handshake."""

    def __init__(self, sock: socket.socket, deadline: float | None) -> None:
        self.sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(time_left(self._deadline))
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        self.sock.settimeout(time_left(self._deadline))
        data = self.sock.recv(size)
        if not data:  # the handshake reads only what it needs: the end comes early
            # A close is a reset here too, as from an http proxy: it may pass (a restart).
            raise ConnectionResetError("the SOCKS5 proxy closed the connection in the "
                                       "handshake")
        return data

    def close(self) -> None:
        self.sock.close()


class _Connected:
    """What python-socks takes as the hop before the proxy (its `forward`): here the socket
    already connected to the proxy, so connecting stays the pool's (deadline, address order)."""

    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def connect(self, *_args: Any, **_kwargs: Any) -> _DeadlineSocket:
        return self._sock


def socks5_connect(sock: socket.socket, proxy_url: str, target: Target,
                   deadline: float | None) -> None:
    """The SOCKS5 handshake to `target` on `sock` (connected to the proxy). A name is sent as
    a name, for the proxy to resolve (Go's dialer does the same for socks5://)."""
    # Here and not at the top: only a SOCKS proxy pays for the library's import.
    from python_socks import ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.sync import Proxy

    parts = urllib.parse.urlsplit(proxy_url)
    where = parts.netloc.rpartition("@")[2]  # host:port, never the user info
    if not _ip_address(target.host) and (
            len(target.host) > 255 or any(len(label) > 63 for label in target.host.split("."))):
        # SOCKS5 carries a name in at most 255 bytes, and the library checks labels too: the
        # kubeconfig's fault, not the proxy's.
        raise UsageError(f"the API server's name {safe(target.host)} cannot go through the "
                         f"SOCKS5 proxy {where}: a DNS name has labels of at most 63 "
                         "characters and 255 in all")
    credentials = user_info(proxy_url)
    user, password = credentials if credentials else (None, None)
    proxy = Proxy(ProxyType.SOCKS5, parts.hostname or "", parts.port or 1080, username=user,
                  password=password, rdns=True,
                  forward=cast(Any, _Connected(_DeadlineSocket(sock, deadline))))
    try:
        proxy.connect(target.host, target.port, timeout=time_left(deadline))
    except ProxyTimeoutError:
        raise socket.timeout("timed out in the SOCKS5 handshake") from None
    except ProxyError as exc:
        raise SocksRefused(str(exc), exc.error_code, where) from None
    except (AssertionError, ValueError, RuntimeError, IndexError, UnicodeError) as exc:
        # The library's own checks of what the proxy sent (a method it never offered, a
        # malformed reply): a broken proxy, whatever the words.
        raise SocksRefused(f"a reply that breaks the protocol ({type(exc).__name__})",
                           proxy=where) from None


def _ip_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
