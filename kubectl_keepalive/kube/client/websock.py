"""A websocket client (RFC 6455) for the API server's port-forward and exec streams.

Only what those streams use: the upgrade on a socket `httppool` opened (TLS and proxy done),
binary and text messages in, binary messages out, ping answered, close. A library would add its
own start-up cost (and read proxy variables on its own); this is the protocol's client side and
no more. Errors: HandshakeError for an upgrade answered with an HTTP status, ProtocolError for a
broken frame or handshake, OSError (TimeoutError among them) from the socket. What arrives is
kept in one growing buffer read from an offset, so a frame of N bytes costs time linear in N;
a message longer than `WebSocket.max_message` is a ProtocolError before it is read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import time

from kubectl_keepalive.terminal import safe

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
_OPCODES = {OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING,
            OPCODE_PONG}

ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
MAX_HEAD = 64 * 1024  # an upgrade answer's status line and headers
MAX_MESSAGE = 256 * 1024 * 1024  # far above any config dump; a bound against a broken length
_RECV_SIZE = 256 * 1024


class HandshakeError(Exception):
    """A websocket upgrade the server answered with an HTTP status instead of 101."""

    def __init__(self, status: int, body: bytes, location: str = "") -> None:
        super().__init__(f"websocket handshake answered {status}")
        self.location = location
        self.status = status
        self.body = body


class ProtocolError(Exception):
    """The server broke the websocket protocol (bad handshake answer or frame)."""


class MessageTooLarge(ProtocolError):
    """A message (or one frame's announced length) longer than the reader's bound."""

    def __init__(self, limit: int, announced: int | None = None) -> None:
        said = f" (a frame announced {announced} bytes)" if announced is not None else ""
        super().__init__(f"a message larger than {limit} bytes{said}")
        self.limit = limit


class _Reader:
    """Buffered reads from the socket under a deadline: exact byte counts, the header block.

    The deadline covers all the reads until it is set again, so that pings or data trickling
    in cannot stretch one read of a message past it. Bytes are appended to one bytearray and
    taken from an offset (`_start`); what was taken is dropped once it is most of the buffer,
    so every byte is copied a bounded number of times."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._start = 0
        self.deadline: float | None = None

    def _fill(self) -> None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self._sock.settimeout(left)
        chunk = self._sock.recv(_RECV_SIZE)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += chunk

    def _available(self) -> int:
        return len(self._buffer) - self._start

    def _take(self, size: int) -> bytes:
        end = self._start + size
        with memoryview(self._buffer) as view:
            data = bytes(view[self._start:end])
        self._start = end
        if self._start >= len(self._buffer):
            self._buffer.clear()
            self._start = 0
        elif self._start > _RECV_SIZE and self._start * 2 > len(self._buffer):
            del self._buffer[:self._start]
            self._start = 0
        return data

    def exact(self, size: int) -> bytes:
        while self._available() < size:
            self._fill()
        return self._take(size)

    def line(self) -> bytes:
        """Up to and including the next CRLF."""
        return self._through(b"\r\n")

    def head(self) -> bytes:
        """Up to and including the blank line that ends an HTTP header block."""
        return self._through(b"\r\n\r\n")

    def _through(self, marker: bytes) -> bytes:
        while True:
            found = self._buffer.find(marker, self._start)
            if found >= 0:
                return self._take(found + len(marker) - self._start)
            if self._available() > MAX_HEAD:
                raise ProtocolError("the upgrade answer's headers are too long")
            self._fill()

    def rest(self, limit: int) -> bytes:
        """What arrives until the server closes (at most `limit`): an error answer's body."""
        try:
            while self._available() < limit:
                self._fill()
        except OSError:
            pass  # closed or timed out: the body is what came
        return self._take(min(limit, self._available()))


def connect(sock: socket.socket, host: str, target: str, headers: list[tuple[str, str]],
            protocols: list[str], timeout: float) -> WebSocket:
    """Upgrade `sock` (connected to `host`, the Host header) to a websocket on `target` (path
    and query), offering `protocols`; the server must pick one of them."""
    sock.settimeout(timeout)
    reader = _Reader(sock)
    reader.deadline = time.monotonic() + timeout
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    lines += [f"{name}: {value}" for name, value in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    status, answer = _parse_head(reader.head())
    if status != 101:
        raise HandshakeError(status, _error_body(reader, answer), answer.get("location", ""))
    expected = accept_for(key)
    connection = {t.strip().lower() for t in answer.get("connection", "").split(",")}
    if answer.get("sec-websocket-accept") != expected or "upgrade" not in connection or \
            answer.get("upgrade", "").lower() != "websocket":
        raise ProtocolError("the server's upgrade answer is not a websocket handshake")
    chosen = answer.get("sec-websocket-protocol")
    if protocols and chosen not in protocols:
        raise ProtocolError(f"the server chose subprotocol {safe(repr(chosen))}, not one of "
                            f"{', '.join(protocols)}")
    return WebSocket(sock, reader, chosen)


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455, section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + ACCEPT_GUID).encode()).digest()).decode()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP answer to the upgrade: {safe(repr(lines[0][:80]))}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _error_body(reader: _Reader, headers: dict[str, str]) -> bytes:
    """The body of a refused upgrade (the API server's Status), read as far as it goes."""
    try:
        length = headers.get("content-length", "")
        if length.isdigit():
            return reader.exact(min(int(length), MAX_HEAD))
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _chunked(reader)
        return reader.rest(MAX_HEAD)
    except (OSError, ProtocolError, ValueError):
        return b""


def _chunked(reader: _Reader) -> bytes:
    """Chunks up to the last one: a server that keeps the connection open is not waited on."""
    body = bytearray()
    while len(body) < MAX_HEAD:
        size = int(reader.line().split(b";")[0].strip(), 16)
        if size == 0:
            break
        body += reader.exact(size)
        reader.exact(2)  # the CRLF after each chunk
    return bytes(body[:MAX_HEAD])


class WebSocket:
    """An open websocket: recv_data() gives (opcode, payload) of each message."""

    def __init__(self, sock: socket.socket, reader: _Reader, subprotocol: str | None) -> None:
        self._sock = sock
        self._reader = reader
        self.subprotocol = subprotocol
        self.max_message = MAX_MESSAGE  # the longest message read; a longer one is refused
        self._closed = False
        self._close_received = False

    def settimeout(self, timeout: float | None) -> None:
        """The time the next recv_data (or send) may take in all."""
        self._reader.deadline = None if timeout is None else time.monotonic() + timeout
        self._sock.settimeout(timeout)

    def send_binary(self, data: bytes) -> None:
        self._send(OPCODE_BINARY, data)

    def recv_data(self) -> tuple[int, bytes]:
        """The next message (fragments joined; pings answered); (OPCODE_CLOSE, reason) once
        the server closes."""
        kind, parts, size = None, [], 0
        while True:
            final, opcode, payload = self._frame()
            if opcode == OPCODE_PING:
                self._send(OPCODE_PONG, payload)
                continue
            if opcode == OPCODE_PONG:
                continue
            if opcode == OPCODE_CLOSE:
                self._close_received = True
                return OPCODE_CLOSE, payload
            if opcode != OPCODE_CONTINUATION:
                if kind is not None:
                    raise ProtocolError("a new message began inside a fragmented one")
                kind = opcode
            elif kind is None:
                raise ProtocolError("a continuation frame without a message")
            size += len(payload)
            if size > self.max_message:
                raise MessageTooLarge(self.max_message)
            parts.append(payload)
            if final:
                return kind, b"".join(parts)

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._reader.exact(2)
        final, opcode, length = bool(first & 0x80), first & 0x0F, second & 0x7F
        if first & 0x70:
            raise ProtocolError("a frame with reserved bits set (no extension was agreed)")
        if second & 0x80:
            raise ProtocolError("a masked frame from the server")
        if opcode not in _OPCODES:
            raise ProtocolError(f"a frame with the unknown opcode {opcode}")
        if opcode >= OPCODE_CLOSE and (length > 125 or not final):
            raise ProtocolError("a control frame that is long or fragmented")
        if length == 126:
            (length,) = struct.unpack(">H", self._reader.exact(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._reader.exact(8))
        if length > self.max_message:
            raise MessageTooLarge(self.max_message, length)
        return final, opcode, self._reader.exact(length)

    def _send(self, opcode: int, data: bytes) -> None:
        size = len(data)
        if size < 126:
            header = struct.pack(">BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, size)
        mask = os.urandom(4)  # clients mask every frame (RFC 6455, section 5.3)
        self._sock.sendall(header + mask + _masked(mask, data))

    def close(self, timeout: float = 1.0) -> None:
        """Say goodbye (status 1000) and, unless the server already did, wait briefly for its
        close; then the socket."""
        if self._closed:
            return
        try:
            self.settimeout(timeout)
            self._send(OPCODE_CLOSE, struct.pack(">H", 1000))
            while not self._close_received:  # what is still in flight, then the server's close
                self._close_received = self._frame()[1] == OPCODE_CLOSE
        except (OSError, ProtocolError, ValueError):
            pass  # the socket is closed below either way
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Close the socket without the closing handshake."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


def _masked(mask: bytes, data: bytes) -> bytes:
    if not data:
        return data
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
