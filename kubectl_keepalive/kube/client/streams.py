"""The API server's streaming protocols over an open websocket: port-forward and exec.

Both speak `v4.channel.k8s.io`: every binary message starts with its channel number. Port-forward
gives port i the data channel 2i and the error channel 2i+1, each opening with the port number
(2 bytes, little endian). Exec uses 1 stdout, 2 stderr and 3 a final Status in JSON. The reads
are synchronous under one deadline: no proxy thread, no socket pair. Every answer and stdout
has a size bound (`limit`, AnswerTooLarge past it); stdout is kept as a list of pieces joined
once, so its cost is linear in its size; the error channel, stderr and the exit status are kept
to a few KiB and quoted cut and escaped. The caller turns any exception from here into the pod's
error.
"""

from __future__ import annotations

import http.client
import io
import json
import time
from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.kube.client import websock
from kubectl_keepalive.kube.client.httppool import AnswerTooLarge, read_bounded
from kubectl_keepalive.terminal import safe, safe_bytes

CHANNEL_PROTOCOL = "v4.channel.k8s.io"
MAX_ANSWER = websock.MAX_MESSAGE  # an Envoy admin answer: real config dumps are tens of MB
MAX_SIDE_TEXT = 64 * 1024  # error channel, stderr and exit status: kept, then quoted cut


class StreamError(Exception):
    """The stream said something went wrong (the error channel, a bad frame, a timeout)."""


class _Frames:
    """Binary frames of a channel websocket, each channel's opening port prefix removed."""

    def __init__(self, ws: Any, deadline: float, prefixed: bool) -> None:
        self._ws = ws
        self._deadline = deadline
        self._prefixed = prefixed
        self._seen: set[int] = set()
        self.closed = False

    def next(self) -> tuple[int, memoryview] | None:
        """(channel, payload) of the next data frame, or None once the server closed."""
        while not self.closed:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise StreamError("timed out")
            self._ws.settimeout(left)
            opcode, data = self._ws.recv_data()
            if opcode == websock.OPCODE_CLOSE:
                self.closed = True
                return None
            if opcode not in (websock.OPCODE_BINARY, websock.OPCODE_TEXT):
                continue
            if not data:
                continue
            channel, payload = data[0], memoryview(data)[1:]
            if self._prefixed and channel not in self._seen:
                self._seen.add(channel)
                payload = payload[2:]  # the port number each port-forward channel opens with
                if not payload:
                    continue
            return channel, payload
        return None


class _ChannelReader(io.RawIOBase):
    """A file of one port's data channel, for http.client; the error channel raises."""

    def __init__(self, frames: _Frames, data_channel: int) -> None:
        self._frames = frames
        self._data = data_channel
        self._buffer = memoryview(b"")
        self.error = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            frame = self._frames.next()
            if frame is None:
                if self.error:
                    raise StreamError(safe_bytes(self.error.strip()))
                return 0
            channel, payload = frame
            if channel == self._data:
                self._buffer = payload
            elif channel == self._data + 1:
                self.error = (self.error + bytes(payload[:MAX_SIDE_TEXT]))[:MAX_SIDE_TEXT]
                raise StreamError(safe_bytes(self.error.strip()) or "error")
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]  # a view: the rest is not copied
        return size


class _KeptOpen(io.BufferedReader):
    """The channel as a buffered file that one answer's close() leaves open for the next
    (http.client closes its file when an answer ends, keep-alive or not)."""

    def close(self) -> None:
        pass


class _FakeSocket:
    """What http.client.HTTPResponse needs of a socket: makefile()."""

    def __init__(self, reader: _ChannelReader) -> None:
        self._file = _KeptOpen(reader)

    def makefile(self, *_args: Any, **_kwargs: Any) -> Any:
        return self._file


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes


def http_get_all(ws: Any, paths: list[str], timeout: float,
                 limit: int = MAX_ANSWER) -> tuple[list[HttpAnswer], str | None]:
    """GET each path in turn on the one forwarded connection (HTTP/1.1 keep-alive, the last
    request asks to close): one stream for several admin reads, under one deadline, each answer
    at most `limit` bytes.

    Returns the answers in order and, when the stream failed after the first answer, why the
    rest are missing; a failure before the first answer raises, as an answer too large does.
    """
    ws.max_message = limit + 16  # a frame holds the channel byte and a piece of the answer
    frames = _Frames(ws, time.monotonic() + timeout, prefixed=True)
    sock = _FakeSocket(_ChannelReader(frames, 0))
    answers: list[HttpAnswer] = []
    for index, path in enumerate(paths):
        last = index == len(paths) - 1
        try:
            answer, closing = _one_get(ws, sock, path, last, limit)
        except Exception as exc:  # the caller names the pod; later reads are extras
            if not answers or isinstance(exc, AnswerTooLarge):
                raise
            return answers, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        answers.append(answer)
        if closing and not last:
            return answers, f"the server closed the connection after GET /{path.lstrip('/')}"
    return answers, None


def _one_get(ws: Any, sock: _FakeSocket, path: str, last: bool,
             limit: int) -> tuple[HttpAnswer, bool]:
    """One answer, and whether the server closes the connection after it."""
    request = (f"GET /{path.lstrip('/')} HTTP/1.1\r\nHost: localhost\r\n"
               f"Connection: {'close' if last else 'keep-alive'}\r\n\r\n").encode()
    ws.send_binary(b"\x00" + request)
    # Read by Content-Length or chunks: the forwarded stream may never show EOF.
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    if response.length is None and not response.chunked:
        # Envoy's HTTP/1.1 answers always carry one or the other; without either, a cut
        # stream would pass for an empty body.
        raise StreamError("the answer was cut short (no Content-Length and no chunks)")
    body = read_bounded(response, limit)
    if response.length:  # http.client leaves what is still missing in .length
        raise StreamError("the answer was cut short")
    return HttpAnswer(response.status, body), bool(response.will_close)


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    failure: str  # the Status message when the command could not run at all


def exec_output(ws: Any, timeout: float, limit: int = MAX_ANSWER) -> ExecResult:
    """Collect stdout (at most `limit` bytes) and stderr until the server sends the final
    Status and closes."""
    ws.max_message = limit + 16
    frames = _Frames(ws, time.monotonic() + timeout, prefixed=False)
    out: list[bytes] = []
    size = 0
    err, status = bytearray(), bytearray()
    while (frame := frames.next()) is not None:
        channel, payload = frame
        if channel == 1:
            size += len(payload)
            if size > limit:
                raise AnswerTooLarge(limit, None)
            out.append(bytes(payload))
        elif channel == 2:
            err += payload[:MAX_SIDE_TEXT - len(err)]
        elif channel == 3:
            status += payload[:MAX_SIDE_TEXT - len(status)]
    if not status:
        raise StreamError("the stream closed without the command's exit status")
    code, failure = _exit_status(bytes(status))
    return ExecResult(b"".join(out), bytes(err), code, failure)


def _exit_status(raw: bytes) -> tuple[int, str]:
    try:
        status = json.loads(raw)
    except ValueError:
        raise StreamError(f"unreadable exit status {safe_bytes(raw, 100)}") from None
    if not isinstance(status, dict):
        raise StreamError("unreadable exit status")
    if status.get("status") == "Success":
        return 0, ""
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or ():
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    return int(str(cause.get("message"))), ""
                except ValueError:
                    break
    return -1, safe(str(status.get("message") or "the command failed"))
