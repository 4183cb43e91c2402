"""TLS with the API server inside the TLS connection to an https:// proxy.

The ssl module cannot wrap an SSLSocket a second time, so the inner session runs on an
ssl.SSLObject over memory buffers, its records carried by the outer socket. NestedTls offers
what httppool (http.client) and websock use of a socket, with the same timeout rule: a call
given T seconds ends within T, however the records trickle in.
"""

from __future__ import annotations

import io
import ssl
import time
from typing import Any, Callable, TypeVar

from kubectl_keepalive.kube.client.tunnels import time_left

_RECV_SIZE = 256 * 1024
_T = TypeVar("_T")


class NestedTls:
    """A TLS session (client side) over `outer`, which is closed with it."""

    def __init__(self, outer: ssl.SSLSocket, context: ssl.SSLContext,
                 server_hostname: str | None) -> None:
        self._outer = outer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing,
                                     server_hostname=server_hostname)
        self._timeout = outer.gettimeout()
        # As a socket's makefile(): an answer's file keeps the connection open after
        # http.client closed it (an answer that ends with the connection is read after that).
        self._files = 0
        self._closed = False

    def do_handshake(self) -> None:
        self._run(self._tls.do_handshake)

    def _run(self, step: Callable[..., _T], *args: Any) -> _T:
        """`step` of the inner session, fed from the outer socket until it completes."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            try:
                result = step(*args)
            except ssl.SSLWantReadError:
                self._flush(deadline)
                self._fill(deadline)
                continue
            self._flush(deadline)
            return result

    def _flush(self, deadline: float | None) -> None:
        data = self._outgoing.read()
        if data:
            self._outer.settimeout(time_left(deadline))
            self._outer.sendall(data)

    def _fill(self, deadline: float | None) -> None:
        self._outer.settimeout(time_left(deadline))
        chunk = self._outer.recv(_RECV_SIZE)
        if chunk:
            self._incoming.write(chunk)
        else:
            self._incoming.write_eof()

    # -- what callers use of a socket ----------------------------------------------------------

    def recv(self, size: int) -> bytes:
        try:
            return self._run(self._tls.read, size)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # close_notify, or the end without one at a record's edge: the end of the stream,
            # as an SSLSocket (suppress_ragged_eofs) and Go report it. A cut answer is still
            # caught by its length or its chunks.
            return b""

    def recv_into(self, buffer: Any, size: int = 0) -> int:
        data = self.recv(size or len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._run(self._tls.write, view)
            view = view[written:]

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.RawIOBase:
        self._files += 1
        return _Reads(self)

    def file_closed(self) -> None:
        self._files -= 1
        if self._closed and self._files <= 0:
            self._outer.close()

    def fileno(self) -> int:
        return self._outer.fileno()

    def setsockopt(self, *args: Any) -> None:
        self._outer.setsockopt(*args)

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    def shutdown(self, how: int) -> None:
        self._outer.shutdown(how)

    def close(self) -> None:
        self._closed = True
        if self._files <= 0:
            self._outer.close()


class _Reads(io.RawIOBase):
    """The inner session's reads as a raw file, for http.client's answers."""

    def __init__(self, tls: NestedTls) -> None:
        super().__init__()
        self._tls = tls

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        return self._tls.recv_into(target)

    def close(self) -> None:
        if not self.closed:
            self._tls.file_closed()
        super().close()
