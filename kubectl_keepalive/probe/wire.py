"""One held connection: connect (directly or through a CONNECT proxy), TLS, HTTP/1.1 requests
and their answers, each read within a size bound and a deadline.

The socket never turns keepalive on: only the gateway's probes may keep the path's flow alive,
so SO_KEEPALIVE is set off explicitly whatever the system's default.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

from kubectl_keepalive import __version__
from kubectl_keepalive.probe.proxyenv import Proxy
from kubectl_keepalive.probe.targets import Target
from kubectl_keepalive.probe.text import printable

MAX_HEAD = 64 * 1024  # status line and headers of one answer
MAX_BODY = 1024 * 1024  # a probe's answer body is read and dropped; more is not a probe's page
MAX_CHUNK_LINE = 1024
RECV_SIZE = 16 * 1024


class Unreachable(Exception):
    """The target could not be reached or did not answer the first request."""


class Cut(Exception):
    """The held connection was cut: `kind` is "reset", "closed" or "no answer"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Closed(Exception):
    """The peer closed the connection (FIN) before a whole answer arrived."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str  # escaped, bounded
    reusable: bool  # the connection stays open after it (no `Connection: close`, framed body)


class Connection:
    """A connected (and for https, TLS) stream; `raw` is the TCP socket for TCP_INFO."""

    def __init__(self, raw: socket.socket, stream: socket.socket) -> None:
        self.raw = raw
        self.stream = stream
        self._buffer = b""

    def close(self) -> None:
        self.stream.close()
        self.raw.close()

    def send(self, data: bytes, deadline: float) -> None:
        self.stream.settimeout(max(0.001, deadline - time.monotonic()))
        self.stream.sendall(data)

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.stream.settimeout(left)
        chunk = self.stream.recv(RECV_SIZE)
        if not chunk:
            raise _Closed("closed")
        self._buffer += chunk

    def read_head(self, deadline: float) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end >= 0:
                head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
                return head
            if len(self._buffer) >= MAX_HEAD + 4:
                raise Unreachable(f"an answer's headers exceed {MAX_HEAD // 1024} KiB")
            self._fill(deadline)

    def _discard(self, size: int, deadline: float) -> None:
        while size > 0:
            if not self._buffer:
                self._fill(deadline)
            taken = min(size, len(self._buffer))
            self._buffer = self._buffer[taken:]
            size -= taken

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise Unreachable("a chunk header line is too long")
            self._fill(deadline)
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def read_answer(self, deadline: float) -> Answer:
        """One whole answer (interim 1xx answers skipped), its body read and dropped."""
        while True:
            status, reason, headers = _parse_head(self.read_head(deadline))
            if status >= 200:
                break
        close = "close" in headers.get("connection", "").lower()
        if status in (204, 304):
            return Answer(status, reason, not close)
        encoding = headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding.split(",")[-1].strip() != "chunked":
                return Answer(status, reason, False)  # framed by the close: not reusable
            total = 0
            while True:
                size_text = self._line(deadline).split(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise Unreachable("a malformed chunk size in the answer") from None
                total += size
                if total > MAX_BODY:
                    raise Unreachable(f"an answer body larger than {MAX_BODY // 1024} KiB")
                if size == 0:
                    while self._line(deadline):  # trailers, up to the empty line
                        pass
                    return Answer(status, reason, not close)
                self._discard(size + 2, deadline)
        length_text = headers.get("content-length")
        if length_text is None:
            return Answer(status, reason, False)  # body until the close
        if not length_text.isdigit() or len(length_text) > 12:
            raise Unreachable("a malformed Content-Length in the answer")
        length = int(length_text)
        if length > MAX_BODY:
            raise Unreachable(f"an answer body larger than {MAX_BODY // 1024} KiB")
        self._discard(length, deadline)
        return Answer(status, reason, not close)

    @property
    def leftover(self) -> int:
        return len(self._buffer)


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() \
            or len(parts[1]) != 3:
        raise Unreachable(f"not an HTTP/1.1 answer: {printable(lines[0], 60)!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            key = name.strip().lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(parts[1]), printable(parts[2] if len(parts) > 2 else b"", 60), headers


def request_bytes(target: Target) -> bytes:
    return (f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            f"User-Agent: kubectl-keepalive-probe/{__version__}\r\nAccept: */*\r\n\r\n"
            ).encode("ascii")


def _connect(host: str, port: int, deadline: float, what: str) -> socket.socket:
    try:
        sock = socket.create_connection((host, port),
                                        timeout=max(0.001, deadline - time.monotonic()))
    except socket.gaierror as exc:
        raise Unreachable(f"cannot resolve {what} {printable(host, 80)}: {exc.strerror}") \
            from None
    except ConnectionRefusedError:
        raise Unreachable(f"{what} {printable(host, 80)}:{port} refused the connection") \
            from None
    except (socket.timeout, TimeoutError):
        raise Unreachable(f"no connection to {what} {printable(host, 80)}:{port} in time") \
            from None
    except OSError as exc:
        raise Unreachable(f"cannot connect to {what} {printable(host, 80)}:{port}: "
                          f"{exc.strerror or exc}") from None
    # Only the gateway's probes may keep the flow alive: never ours, whatever the default.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _tunnel(sock: socket.socket, target: Target, proxy: Proxy, deadline: float) -> None:
    """CONNECT through the proxy; its answer's headers read within the bounds."""
    authority = target.address
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    conn = Connection(sock, sock)
    try:
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), deadline)
        status, reason, _ = _parse_head(conn.read_head(deadline))
    except (socket.timeout, TimeoutError):
        raise Unreachable(f"the proxy {proxy.shown} did not answer CONNECT in time") from None
    except (_Closed, OSError) as exc:
        raise Unreachable(f"the proxy {proxy.shown} closed the CONNECT: "
                          f"{getattr(exc, 'strerror', None) or 'closed'}") from None
    if status != 200:
        raise Unreachable(f"the proxy {proxy.shown} refused CONNECT {authority}: {status} "
                          f"{reason}")
    if conn.leftover:
        raise Unreachable(f"the proxy {proxy.shown} sent bytes after its CONNECT answer")


def open_connection(target: Target, proxy: Proxy | None, context: ssl.SSLContext | None,
                    timeout: float, sni_given: bool) -> Connection:
    """Connect (and tunnel and handshake) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    if proxy is not None:
        raw = _connect(proxy.host, proxy.port, deadline, "proxy")
        try:
            _tunnel(raw, target, proxy, deadline)
        except BaseException:
            raw.close()
            raise
    else:
        raw = _connect(target.host, target.port, deadline, "target")
    if context is None:
        return Connection(raw, raw)
    try:
        raw.settimeout(max(0.001, deadline - time.monotonic()))
        # An address is checked against the certificate's IP names and sent as no SNI.
        stream = context.wrap_socket(raw, server_hostname=target.server_name or target.host,
                                     do_handshake_on_connect=True)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise Unreachable(f"TLS: the certificate of {target.address} was refused: "
                          f"{printable(exc.verify_message or str(exc), 160)} "
                          "(--insecure-target skips the check)") from None
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        hint = ("" if sni_given else
                "; no --host was given, so no server name was sent: a gateway that routes by "
                "SNI drops a handshake without one")
        what = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else \
            printable(str(exc) or type(exc).__name__, 160)
        raise Unreachable(f"TLS handshake with {target.address} failed: {what}{hint}") \
            from None
    # The TLS socket took over the descriptor: TCP_INFO is read through it.
    return Connection(stream, stream)


def first_request(conn: Connection, target: Target, timeout: float) -> Answer:
    """The request that proves the path: any status will do, but the connection must stay."""
    deadline = time.monotonic() + timeout
    try:
        conn.send(request_bytes(target), deadline)
        answer = conn.read_answer(deadline)
    except (socket.timeout, TimeoutError):
        raise Unreachable(f"no answer to the first request within {timeout:g}s") from None
    except _Closed:
        raise Unreachable("the connection closed before the first answer") from None
    except ssl.SSLError as exc:
        raise Unreachable(f"TLS error on the first request: {printable(str(exc), 120)}") \
            from None
    except OSError as exc:
        raise Unreachable(f"the first request failed: {exc.strerror or exc}") from None
    if not answer.reusable or conn.leftover:
        raise Unreachable(f"the first answer ({answer.status}) ends the connection "
                          "(Connection: close or no length): there is no connection to hold")
    return answer


def second_request(conn: Connection, target: Target, timeout: float) -> Answer:
    """After the silence: the answer proves the connection survived; else raise Cut."""
    deadline = time.monotonic() + timeout
    try:
        conn.send(request_bytes(target), deadline)
        return conn.read_answer(deadline)
    except (socket.timeout, TimeoutError):
        raise Cut("no answer", f"nothing came back within {timeout:g}s: the flow was dropped "
                               "silently") from None
    except (_Closed, ssl.SSLZeroReturnError, ssl.SSLEOFError):
        raise Cut("closed", "closed (FIN): the gateway or a proxy ended the connection, "
                            "not an L4 balancer") from None
    except (ConnectionResetError, BrokenPipeError):
        raise Cut("reset", "reset (RST): something on the path forgot the flow") from None
    except ssl.SSLError as exc:
        raise Cut("closed", f"TLS ended: {printable(str(exc), 120)}") from None
    except OSError as exc:
        raise Cut("no answer", f"{exc.strerror or exc}") from None
