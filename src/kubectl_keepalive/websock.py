"""A websocket client (RFC 6455) for the API server's port-forward and exec streams.

Only what those streams use: the upgrade on a socket `httppool` opened (TLS and proxy done),
binary and text messages in, binary messages out, ping answered, close. A library would add its
own start-up cost (and read proxy variables on its own); this is the protocol's client side and
no more. Errors: HandshakeError for an upgrade answered with an HTTP status, ProtocolError for a
broken frame or handshake, OSError (TimeoutError among them) from the socket.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA

ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B65"  # RFC 6455, section 1.3
MAX_HEAD = 64 * 1024  # an upgrade answer's status line and headers
MAX_MESSAGE = 256 * 1024 * 1024  # far above any config dump; a bound against a broken length


class HandshakeError(Exception):
    """A websocket upgrade the server answered with an HTTP status instead of 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"websocket handshake answered {status}")
        self.status = status
        self.body = body


class ProtocolError(Exception):
    """The server broke the websocket protocol (bad handshake answer or frame)."""


class _Reader:
    """Buffered reads from the socket: exact byte counts and the header block."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += chunk

    def exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def head(self) -> bytes:
        """Up to and including the blank line that ends an HTTP header block."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError("the upgrade answer's headers are too long")
            self._fill()
        end = self._buffer.index(b"\r\n\r\n") + 4
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def rest(self, limit: int) -> bytes:
        """What arrives until the server closes (at most `limit`): an error answer's body."""
        try:
            while len(self._buffer) < limit:
                self._fill()
        except OSError:
            pass
        return self._buffer[:limit]


def connect(sock: socket.socket, host: str, target: str, headers: list[tuple[str, str]],
            protocols: list[str], timeout: float) -> WebSocket:
    """Upgrade `sock` (connected to `host`) to a websocket on `target` (path and query)."""
    sock.settimeout(timeout)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    lines += [f"{name}: {value}" for name, value in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    reader = _Reader(sock)
    status, answer = _parse_head(reader.head())
    if status != 101:
        raise HandshakeError(status, _error_body(reader, answer))
    expected = base64.b64encode(hashlib.sha1((key + ACCEPT_GUID).encode()).digest()).decode()
    if answer.get("sec-websocket-accept") != expected or \
            answer.get("upgrade", "").lower() != "websocket":
        raise ProtocolError("the server's upgrade answer is not a websocket handshake")
    return WebSocket(sock, reader, answer.get("sec-websocket-protocol"))


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP answer to the upgrade: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _error_body(reader: _Reader, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length", "")
    if length.isdigit():
        try:
            return reader.exact(min(int(length), MAX_HEAD))
        except OSError:
            return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunked(reader.rest(MAX_HEAD))
    return reader.rest(MAX_HEAD)


def _dechunked(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if not sep or size == 0:
            break
        body, data = body + data[:size], data[size + 2:]
    return body


class WebSocket:
    """An open websocket: recv_data() gives (opcode, payload) of each message."""

    def __init__(self, sock: socket.socket, reader: _Reader, subprotocol: str | None) -> None:
        self._sock = sock
        self._reader = reader
        self.subprotocol = subprotocol
        self._closed = False

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def send_binary(self, data: bytes) -> None:
        self._send(OPCODE_BINARY, data)

    def recv_data(self) -> tuple[int, bytes]:
        """The next message (fragments joined; pings answered); (OPCODE_CLOSE, reason) once
        the server closes."""
        kind, parts = None, []
        while True:
            final, opcode, payload = self._frame()
            if opcode == OPCODE_PING:
                self._send(OPCODE_PONG, payload)
                continue
            if opcode == OPCODE_PONG:
                continue
            if opcode == OPCODE_CLOSE:
                return OPCODE_CLOSE, payload
            if opcode != OPCODE_CONTINUATION:
                if kind is not None:
                    raise ProtocolError("a new message began inside a fragmented one")
                kind = opcode
            elif kind is None:
                raise ProtocolError("a continuation frame without a message")
            parts.append(payload)
            if final:
                return kind, b"".join(parts)

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._reader.exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._reader.exact(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._reader.exact(8))
        if length > MAX_MESSAGE:
            raise ProtocolError(f"a frame of {length} bytes")
        mask = self._reader.exact(4) if second & 0x80 else b""
        payload = self._reader.exact(length)
        return bool(first & 0x80), first & 0x0F, _masked(mask, payload) if mask else payload

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
        """Say goodbye (status 1000) and wait briefly for the server's close; then the socket."""
        if self._closed:
            return
        try:
            self._sock.settimeout(timeout)
            self._send(OPCODE_CLOSE, struct.pack(">H", 1000))
            for _ in range(64):  # what is still in flight, then the server's close
                if self._frame()[1] == OPCODE_CLOSE:
                    break
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
