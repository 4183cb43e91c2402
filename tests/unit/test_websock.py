"""The websocket client against a small server written here from RFC 6455 (a real socket on
loopback): handshake and its failures, masking, fragments, pings, close, broken frames."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kubectl_keepalive.kube.client import websock

Script = Callable[[socket.socket, dict[str, str]], None]


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + websock.ACCEPT_GUID).encode()).digest()).decode()


def test_the_accept_value_is_the_rfcs_own_example() -> None:
    # RFC 6455, section 1.3: the one check that does not rest on the constant under test.
    assert websock.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    """A server frame: never masked."""
    head = bytes([(0x80 if final else 0) | opcode])
    size = len(payload)
    if size < 126:
        return head + bytes([size]) + payload
    if size < 1 << 16:
        return head + bytes([126]) + struct.pack(">H", size) + payload
    return head + bytes([127]) + struct.pack(">Q", size) + payload


def read_client_frame(conn: socket.socket) -> tuple[int, bytes]:
    """A client frame, which must be masked; (opcode, unmasked payload)."""
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "client went away"
            data += chunk
        return data

    first, second = exact(2)
    assert second & 0x80, "a client frame must be masked"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack(">H", exact(2))
    mask = exact(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(exact(size)))
    return first & 0x0F, payload


class Server:
    """One connection: reads the upgrade request, then runs the test's script."""

    def __init__(self, script: Script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.request: dict[str, str] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Script) -> None:
        conn, _ = self.listener.accept()
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            lines = head.decode().split("\r\n")
            self.request["line"] = lines[0]
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    self.request[name.strip().lower()] = value.strip()
            script(conn, self.request)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            conn.close()

    def join(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()
        if self.error:
            raise self.error


def upgraded(request: dict[str, str], extra: bytes = b"") -> bytes:
    """The 101 answer to `request`, then `extra` (frames) in the same packet."""
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_value(request["sec-websocket-key"]).encode()
            + b"\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n" + extra)


def upgrade(conn: socket.socket, request: dict[str, str], extra: bytes = b"") -> None:
    conn.sendall(upgraded(request, extra))


def held_open(answer: Callable[[dict[str, str]], bytes]) -> tuple[Script, threading.Event]:
    """A script that sends its answer and keeps the connection open until the event is set."""
    done = threading.Event()

    def script(conn: socket.socket, request: dict[str, str]) -> None:
        conn.sendall(answer(request))
        done.wait(5)

    return script, done


@pytest.fixture
def serve() -> Iterator[Callable[[Script], tuple[Server, socket.socket]]]:
    started: list[Server] = []

    def start(script: Script) -> tuple[Server, socket.socket]:
        server = Server(script)
        started.append(server)
        return server, socket.create_connection(("127.0.0.1", server.port))

    yield start
    for server in started:
        server.join()


def test_messages_both_ways(serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    big = bytes(range(256)) * 300  # 76800 bytes: the 64-bit length form

    def script(conn: socket.socket, request: dict[str, str]) -> None:
        # Frames may follow the 101 in the same packet.
        upgrade(conn, request, frame(websock.OPCODE_BINARY, b"\x00\x98\x3a"))
        conn.sendall(frame(websock.OPCODE_PING, b"are you there")
                     + frame(websock.OPCODE_BINARY, b"one ", final=False)
                     + frame(websock.OPCODE_CONTINUATION, b"message")
                     + frame(websock.OPCODE_TEXT, b"text") + frame(websock.OPCODE_BINARY, big))
        assert read_client_frame(conn) == (websock.OPCODE_PONG, b"are you there")
        assert read_client_frame(conn) == (websock.OPCODE_BINARY, b"\x00GET / HTTP/1.1\r\n")
        assert read_client_frame(conn) == (websock.OPCODE_BINARY, b"x" * 300)
        assert read_client_frame(conn)[0] == websock.OPCODE_CLOSE
        conn.sendall(frame(websock.OPCODE_CLOSE, struct.pack(">H", 1000)))

    server, sock = serve(script)
    ws = websock.connect(sock, f"127.0.0.1:{server.port}", "/api/v1/x?ports=15000",
                         [("Authorization", "Bearer t"), ("Impersonate-Group", "a"),
                          ("Impersonate-Group", "b")], ["v4.channel.k8s.io"], 5.0)
    assert ws.subprotocol == "v4.channel.k8s.io"
    assert ws.recv_data() == (websock.OPCODE_BINARY, b"\x00\x98\x3a")
    assert ws.recv_data() == (websock.OPCODE_BINARY, b"one message")  # ping answered first
    ws.send_binary(b"\x00GET / HTTP/1.1\r\n")
    assert ws.recv_data() == (websock.OPCODE_TEXT, b"text")
    assert ws.recv_data() == (websock.OPCODE_BINARY, big)
    ws.send_binary(b"x" * 300)  # the 16-bit length form
    ws.close()
    server.join()
    assert server.request["line"] == "GET /api/v1/x?ports=15000 HTTP/1.1"
    assert server.request["sec-websocket-protocol"] == "v4.channel.k8s.io"
    assert server.request["authorization"] == "Bearer t"
    assert server.request["upgrade"] == "websocket"


@pytest.mark.parametrize(("answer", "body"), [
    (b'HTTP/1.1 403 Forbidden\r\nContent-Length: 16\r\n\r\n{"message":"no"}',
     b'{"message":"no"}'),
    (b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     b"hello"),
    (b"HTTP/1.0 500 Internal Server Error\r\n\r\nbroken", b"broken"),
])
def test_an_upgrade_answered_with_a_status(
        serve: Callable[[Script], tuple[Server, socket.socket]], answer: bytes,
        body: bytes) -> None:
    _server, sock = serve(lambda conn, _request: conn.sendall(answer))
    with pytest.raises(websock.HandshakeError) as refused:
        websock.connect(sock, "h", "/", [], [], 5.0)
    assert refused.value.status == int(answer.split(b" ")[1])
    assert refused.value.body == body
    sock.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n" + b"X: y\r\n" * 20000,  # past MAX_HEAD
])
def test_a_broken_handshake_is_a_protocol_error(
        serve: Callable[[Script], tuple[Server, socket.socket]], answer: bytes) -> None:
    def script(conn: socket.socket, _request: dict[str, str]) -> None:
        with contextlib.suppress(OSError):  # the client may hang up before all is sent
            conn.sendall(answer)
            conn.recv(1)  # until the client gives up

    _server, sock = serve(script)
    with pytest.raises(websock.ProtocolError):
        websock.connect(sock, "h", "/", [], [], 5.0)
    sock.close()


@pytest.mark.parametrize("frames", [
    frame(websock.OPCODE_CONTINUATION, b"orphan"),
    frame(websock.OPCODE_BINARY, b"a", final=False) + frame(websock.OPCODE_BINARY, b"b"),
    bytes([0x82, 127]) + struct.pack(">Q", 1 << 40),
    bytes([0x82, 0x81]) + b"mask" + b"x",  # masked by the server
    bytes([0xC2, 0x01]) + b"x",  # a reserved bit
    bytes([0x83, 0x00]),  # an unknown opcode
    bytes([0x89, 126]) + struct.pack(">H", 200) + b"x" * 200,  # a long ping
    bytes([0x09, 0x00]),  # a fragmented ping
])
def test_broken_frames_are_protocol_errors(
        serve: Callable[[Script], tuple[Server, socket.socket]], frames: bytes) -> None:
    _server, sock = serve(lambda conn, request: upgrade(conn, request, frames))
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    with pytest.raises(websock.ProtocolError):
        ws.recv_data()
    ws.shutdown()


def test_a_server_that_goes_away_or_goes_quiet(
        serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    _server, sock = serve(lambda conn, request: upgrade(conn, request, b"\x82"))  # half a frame
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    with pytest.raises(ConnectionResetError):
        ws.recv_data()
    ws.shutdown()
    quiet = threading.Event()

    def stall(conn: socket.socket, request: dict[str, str]) -> None:
        upgrade(conn, request)
        quiet.wait(5)

    _server, sock = serve(stall)
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    ws.settimeout(0.2)
    with pytest.raises(socket.timeout):  # TimeoutError from Python 3.10 on
        ws.recv_data()
    quiet.set()
    ws.shutdown()


def test_a_refused_upgrade_on_a_connection_kept_open_returns_at_once(
        serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    """A chunked Status from a keep-alive server: read to the last chunk, not to a close."""
    script, kept_open = held_open(
        lambda _request: b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"7\r\n{\"a\":1}\r\n0\r\n\r\n")
    _server, sock = serve(script)
    started = time.monotonic()
    with pytest.raises(websock.HandshakeError) as refused:
        websock.connect(sock, "h", "/", [], [], 5.0)
    assert time.monotonic() - started < 2
    assert refused.value.body == b'{"a":1}'
    kept_open.set()
    sock.close()


def test_pings_cannot_stretch_a_read_past_its_deadline(
        serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    stop = threading.Event()

    def script(conn: socket.socket, request: dict[str, str]) -> None:
        upgrade(conn, request)
        while not stop.wait(0.1):
            conn.sendall(frame(websock.OPCODE_PING, b"."))

    _server, sock = serve(script)
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    ws.settimeout(0.5)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        ws.recv_data()
    assert time.monotonic() - started < 1.5
    stop.set()
    ws.shutdown()


@pytest.mark.parametrize(("answer", "protocols"), [
    (b"Upgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n", []),  # no Connection: Upgrade
    (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n",
     ["v4.channel.k8s.io"]),  # no subprotocol chosen
    (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
     b"Sec-WebSocket-Protocol: v9.other\r\n", ["v4.channel.k8s.io"]),
])
def test_a_handshake_answer_missing_what_the_rfc_requires(
        serve: Callable[[Script], tuple[Server, socket.socket]], answer: bytes,
        protocols: list[str]) -> None:
    def script(conn: socket.socket, request: dict[str, str]) -> None:
        accept = accept_value(request["sec-websocket-key"]).encode()
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                     + answer.replace(b"{accept}", accept) + b"\r\n")
        conn.recv(1)

    _server, sock = serve(script)
    with pytest.raises(websock.ProtocolError):
        websock.connect(sock, "h", "/", [], protocols, 5.0)
    sock.close()


def test_close_after_the_servers_close_does_not_wait(
        serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    script, kept_open = held_open(lambda request: upgraded(
        request, frame(websock.OPCODE_CLOSE, struct.pack(">H", 1000))))
    _server, sock = serve(script)
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    assert ws.recv_data()[0] == websock.OPCODE_CLOSE
    started = time.monotonic()
    ws.close(timeout=3)
    assert time.monotonic() - started < 1
    kept_open.set()


def test_a_large_frame_after_small_ones_is_read_whole_and_in_order(
        serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    """The reader's one buffer, taken from an offset and compacted as it goes: small frames,
    one of 3 MiB, small ones again, all intact."""
    big = bytes(range(256)) * (3 * 4096)
    small = [bytes([i]) * (i * 997 % 70_000) for i in range(1, 40)]
    frames = b"".join(frame(websock.OPCODE_BINARY, p) for p in small[:20]) + \
        frame(websock.OPCODE_BINARY, big) + \
        b"".join(frame(websock.OPCODE_BINARY, p) for p in small[20:])
    script, done = held_open(lambda request: upgraded(request, frames))
    _server, sock = serve(script)
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    ws.settimeout(10)
    got = [ws.recv_data()[1] for _ in range(len(small) + 1)]
    done.set()
    assert got == [*small[:20], big, *small[20:]]
    ws.shutdown()


def test_a_frame_or_message_past_the_bound_is_refused_before_it_is_read(
        serve: Callable[[Script], tuple[Server, socket.socket]]) -> None:
    announced = struct.pack(">BBQ", 0x82, 127, 1 << 62)
    script, done = held_open(lambda request: upgraded(request, announced))
    _server, sock = serve(script)
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    ws.settimeout(5)
    with pytest.raises(websock.MessageTooLarge):
        ws.recv_data()
    done.set()
    ws.shutdown()
    pieces = frame(websock.OPCODE_BINARY, b"x" * 600, final=False) + \
        frame(websock.OPCODE_CONTINUATION, b"x" * 600)
    script, done = held_open(lambda request: upgraded(request, pieces))
    _server, sock = serve(script)
    ws = websock.connect(sock, "h", "/", [], [], 5.0)
    ws.max_message = 1000
    ws.settimeout(5)
    with pytest.raises(websock.MessageTooLarge):
        ws.recv_data()
    done.set()
    ws.shutdown()
