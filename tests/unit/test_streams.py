"""Port-forward and exec streams: every transport failure is the pod's ClusterError; the
channel protocol is read right; path segments and impersonation headers are what is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.errors import ClusterError, ForbiddenError
from kubectl_keepalive.kube.api import KubeCluster
from kubectl_keepalive.kube.client import websock
from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags, resolve
from kubectl_keepalive.kube.client.transport import HandshakeError
from kubectl_keepalive.model import Pod

POD = Pod(namespace="gw", name="gateway-1")
BINARY, CLOSE = websock.OPCODE_BINARY, websock.OPCODE_CLOSE


class FakeSocket:
    """A websocket that replays frames, or raises on send/recv."""

    def __init__(self, frames: list[tuple[int, bytes]], fail_send: BaseException | None = None,
                 fail_recv: BaseException | None = None) -> None:
        self.frames = list(frames)
        self.fail_send, self.fail_recv = fail_send, fail_recv
        self.sent: list[bytes] = []
        self.closed = False

    def send_binary(self, data: bytes) -> None:
        if self.fail_send:
            raise self.fail_send
        self.sent.append(data)

    def settimeout(self, _timeout: float) -> None:
        pass

    def recv_data(self) -> tuple[int, bytes]:
        if self.fail_recv:
            raise self.fail_recv
        return self.frames.pop(0) if self.frames else (CLOSE, b"")

    def close(self, timeout: float = 0) -> None:
        self.closed = True
        raise OSError("closing a broken socket fails too")


@pytest.fixture
def cluster(tmp_path: Path) -> KubeCluster:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "c",
                                                                        "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return KubeCluster(resolve(str(path), None, None, {}, flags=ConnectionFlags(
        as_user="jane", as_groups=("ops",))))


def use(cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch, result: Any) -> list[Any]:
    opened: list[Any] = []

    def websocket_(path: str, query: list[tuple[str, str]], protocols: list[str],
                   timeout: float) -> Any:
        opened.append((path, query, protocols))
        if isinstance(result, BaseException):
            raise result
        return result

    monkeypatch.setattr(cluster._transport, "websocket", websocket_)
    return opened


def data(channel: int, payload: bytes, first: bool = False) -> tuple[int, bytes]:
    return BINARY, bytes([channel]) + (b"\x98\x3a" if first else b"") + payload


@pytest.mark.parametrize("failure", [
    {"fail_send": BrokenPipeError(32, "Broken pipe")},
    {"fail_send": ConnectionResetError(104, "Connection reset by peer")},
    {"fail_recv": ConnectionResetError("the server closed the connection")},
    {"fail_recv": TimeoutError("timed out")},
    {"fail_recv": websock.ProtocolError("a frame of 18446744073709551615 bytes")},
    {"fail_recv": ValueError("junk")},
])
def test_port_forward_failures_are_the_pods_cluster_error(
        cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch, failure: dict[str, Any]) -> None:
    use(cluster, monkeypatch, FakeSocket([], **failure))
    with pytest.raises(ClusterError, match="Envoy admin of gw/gateway-1 through port-forward"):
        cluster.read_admin(POD, "config_dump", 1.0)


def test_port_forward_error_channel_and_early_close(cluster: KubeCluster,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    use(cluster, monkeypatch, FakeSocket([data(0, b"", True), data(1, b"", True),
                                          data(1, b"connection refused")]))
    with pytest.raises(ClusterError, match=r"gw/gateway-1.*connection refused"):
        cluster.read_admin(POD, "config_dump", 1.0)
    use(cluster, monkeypatch, FakeSocket([data(0, b"HTTP/1.1 200 OK\r\nContent-Le", True)]))
    with pytest.raises(ClusterError, match="gw/gateway-1"):
        cluster.read_admin(POD, "config_dump", 1.0)


def test_port_forward_reads_a_chunked_answer(cluster: KubeCluster,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    sock = FakeSocket([data(0, b"", True), data(1, b"", True), data(0, body[:20]),
                       data(0, body[20:])])
    opened = use(cluster, monkeypatch, sock)
    assert cluster.read_admin(POD, "config_dump", 1.0).body == b"hello"
    assert sock.sent[0].startswith(b"\x00GET /config_dump HTTP/1.1\r\n")
    assert opened[0][0] == "/api/v1/namespaces/gw/pods/gateway-1/portforward"


def answer(body: bytes, *headers: str) -> bytes:
    return b"\r\n".join([b"HTTP/1.1 200 OK", f"Content-Length: {len(body)}".encode(),
                         *(h.encode() for h in headers), b"", body])


def test_several_admin_reads_share_one_port_forward(cluster: KubeCluster,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = answer(b'{"configs": []}'), answer(b"listener.x.downstream_cx_active: 1")
    # The second answer split across frames, the first one's tail in the same frame as its start.
    sock = FakeSocket([data(0, b"", True), data(1, b"", True), data(0, first + second[:10]),
                       data(0, second[10:])])
    opened = use(cluster, monkeypatch, sock)
    reads = cluster.read_admin_all(POD, ["config_dump", "stats"], 1.0)
    assert [r.body for r in reads] == [b'{"configs": []}', b"listener.x.downstream_cx_active: 1"]
    assert [r.error for r in reads] == [None, None]
    assert len(opened) == 1, "one websocket for both reads"
    assert b"Connection: keep-alive" in sock.sent[0] and b"GET /config_dump" in sock.sent[0]
    assert b"Connection: close" in sock.sent[1] and b"GET /stats" in sock.sent[1]


@pytest.mark.parametrize("frames", [
    [data(0, answer(b"{}"), True)],  # the stream ends before the second answer
    [data(0, answer(b"{}", "Connection: close"), True)],  # the server will not keep it open
    [data(0, answer(b"{}") + b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
          True)],
])
def test_a_later_read_that_fails_leaves_the_first_one_standing(
        cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch,
        frames: list[tuple[int, bytes]]) -> None:
    use(cluster, monkeypatch, FakeSocket(frames))
    first, second = cluster.read_admin_all(POD, ["config_dump", "stats"], 1.0)
    assert (first.body, first.error) == (b"{}", None)
    assert second.body == b"" and second.error and "gw/gateway-1" in second.error
    assert "/stats" in second.error


def test_handshake_statuses(cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"message": "Unauthorized"}).encode()
    use(cluster, monkeypatch, HandshakeError(401, body))
    with pytest.raises(ClusterError, match=r'unauthorized \(401\).*credentials of user "u" '
                                           r"\(context a\)"):
        cluster.exec_proxy(POD, ["ss"], 1.0)
    use(cluster, monkeypatch, HandshakeError(403, b"{}"))
    with pytest.raises(ForbiddenError, match="cannot create pods/exec in namespace gw"):
        cluster.exec_proxy(POD, ["ss"], 1.0)
    use(cluster, monkeypatch, OSError("network is unreachable"))
    with pytest.raises(ClusterError, match="exec in gw/gateway-1 failed: OSError"):
        cluster.exec_proxy(POD, ["ss"], 1.0)


def test_exec_exit_codes(cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = json.dumps({"status": "Success"}).encode()
    use(cluster, monkeypatch, FakeSocket([data(1, b"out"), data(2, b"warn"), data(3, ok)]))
    assert cluster.exec_proxy(POD, ["ss"], 1.0) == b"out"
    failed = json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {
        "causes": [{"reason": "ExitCode", "message": "2"}]}}).encode()
    use(cluster, monkeypatch, FakeSocket([data(2, b"no such file"), data(3, failed)]))
    with pytest.raises(ClusterError, match="exited 2: no such file"):
        cluster.exec_proxy(POD, ["ss"], 1.0)
    use(cluster, monkeypatch, FakeSocket([data(1, b"partial")]))
    with pytest.raises(ClusterError, match="without the command's exit status"):
        cluster.exec_proxy(POD, ["ss"], 1.0)


def test_rest_escapes_segments_and_sends_impersonation(cluster: KubeCluster,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str]] = []

    def request(method: str, path: str, query: Any = None, body: Any = None,
                content_type: str = "") -> tuple[int, bytes]:
        sent.append((method, path))
        return 200, b'{"items": []}'

    monkeypatch.setattr(cluster._transport, "request", request)
    cluster.list_pods("../../apis/apps/v1/namespaces/kube-system/deployments?x=", "a=b")
    assert sent[0][1] == ("/api/v1/namespaces/..%2F..%2Fapis%2Fapps%2Fv1%2Fnamespaces%2F"
                          "kube-system%2Fdeployments%3Fx%3D/pods")
    from kubectl_keepalive.kube.client.credentials import Auth

    assert cluster._transport.headers(Auth("Bearer t")) == [
        ("User-Agent", "kubectl-keepalive"), ("Authorization", "Bearer t"),
        ("Impersonate-User", "jane"), ("Impersonate-Group", "ops")]


def test_an_admin_answer_past_the_bound_is_the_pods_size_error(
        cluster: KubeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Announced (Content-Length 10^15) or seen while reading chunks: one error naming the
    bound, before the first answer is kept."""
    cluster.max_admin_answer = 1024
    announced = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n{"
    use(cluster, monkeypatch, FakeSocket([data(0, announced, True)]))
    with pytest.raises(ClusterError, match=r"gw/gateway-1 is larger than 1 KiB"):
        cluster.read_admin(POD, "config_dump", 1.0)
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    use(cluster, monkeypatch, FakeSocket([data(0, chunked, True), data(0, chunk),
                                          data(0, chunk)]))
    with pytest.raises(ClusterError, match=r"--max-answer-size"):
        cluster.read_admin(POD, "config_dump", 1.0)


def test_exec_stdout_is_joined_in_order_and_bounded(cluster: KubeCluster,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = [data(1, bytes([i]) * 100) for i in range(50)]
    success = data(3, json.dumps({"status": "Success"}).encode())
    use(cluster, monkeypatch, FakeSocket([*pieces, data(2, b"\x1b[2J warn"), success]))
    assert cluster.exec_proxy(POD, ["true"], 1.0) == b"".join(bytes([i]) * 100
                                                              for i in range(50))
    cluster.max_admin_answer = 4999
    use(cluster, monkeypatch, FakeSocket([*pieces, success]))
    with pytest.raises(ClusterError, match="larger than 4999 bytes"):
        cluster.exec_proxy(POD, ["true"], 1.0)


def test_stream_text_from_the_server_is_escaped_and_cut(cluster: KubeCluster,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    use(cluster, monkeypatch, FakeSocket([data(0, b"", True), data(1, b"", True),
                                          data(1, b"\x1b[2J" + b"Z" * 100_000)]))
    with pytest.raises(ClusterError) as caught:
        cluster.read_admin(POD, "config_dump", 1.0)
    assert "\\x1b[2J" in str(caught.value) and "\x1b" not in str(caught.value)
    assert len(str(caught.value)) < 600
    failed = {"status": "Failure", "reason": "NonZeroExitCode",
              "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}}
    use(cluster, monkeypatch, FakeSocket([data(2, b"\x07bad\r\n" * 50_000),
                                          data(3, json.dumps(failed).encode())]))
    with pytest.raises(ClusterError) as caught:
        cluster.exec_proxy(POD, ["ss"], 1.0)
    assert "exited 2" in str(caught.value) and "\\x07bad" in str(caught.value)
    assert "\x07" not in str(caught.value) and len(str(caught.value)) < 600
