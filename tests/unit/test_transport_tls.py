"""The transport against a real TLS server on loopback: the kubeconfig's CA, client certificate
(as *-data: loaded through temporary files), tls-server-name, insecure mode, impersonation
headers, 401 and --request-timeout. Certificates are made by the openssl command."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.errors import ClusterError, UnavailableError
from kubectl_keepalive.kube.api import KubeCluster
from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags, resolve


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=DNS:kube.test"), ("client", "")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}-user/O=devs", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                *(["-extfile", f"{name}.ext"] if ext else []), cwd=d)
    return d


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server
    seen: list[dict[str, Any]] = []  # noqa: RUF012  (shared by the test and the server thread)

    def do_GET(self) -> None:
        cert = self.connection.getpeercert() if isinstance(self.connection,
                                                           ssl.SSLSocket) else None
        subject = dict(x[0] for x in cert["subject"]) if cert else {}
        headers = {k: self.headers.get_all(k) for k in self.headers}
        Handler.seen.append({"path": self.path, "headers": headers, "cn": subject.get(
            "commonName")})
        if "slow" in self.path:
            time.sleep(3)
        status = 401 if self.headers.get("Authorization") == "Bearer bad" else 200
        body = json.dumps({"items": [], "message": "Unauthorized"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up mid-connection (the tests that drop connections do
    it on purpose); any other handler error is printed as usual."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(pki: Path) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.load_verify_locations(pki / "ca.crt")
    context.verify_mode = ssl.CERT_OPTIONAL
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    """A kubeconfig of one context "a": cluster "c" and user "u" as given."""
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "c",
                                                                        "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}]}))
    return str(path)


def kube(tmp_path: Path, pki: Path, port: int, cluster: dict[str, Any],
         user: dict[str, Any], flags: ConnectionFlags | None = None) -> KubeCluster:
    path = kubeconfig(tmp_path, {"server": f"https://127.0.0.1:{port}", **cluster}, user)
    return KubeCluster(resolve(path, None, None, {}, flags=flags))


def test_ca_client_cert_sni_and_impersonation(tmp_path: Path, pki: Path, server: int) -> None:
    Handler.seen.clear()
    cluster = {"certificate-authority-data": b64(pki / "ca.crt"), "tls-server-name": "kube.test"}
    user = {"client-certificate-data": b64(pki / "client.crt"),
            "client-key-data": b64(pki / "client.key")}
    k = kube(tmp_path, pki, server, cluster, user,
             ConnectionFlags(as_user="jane", as_groups=("a", "b")))
    assert k.list_services("my ns") == []
    [seen] = Handler.seen
    assert seen["path"] == "/api/v1/namespaces/my%20ns/services"
    assert seen["cn"] == "client-user"
    assert seen["headers"]["Impersonate-User"] == ["jane"]
    assert seen["headers"]["Impersonate-Group"] == ["a", "b"]
    assert not list(Path("/tmp").glob("kubectl-keepalive-*.pem"))  # temp files are gone


def test_wrong_server_name_fails_and_insecure_skips_verification(
        tmp_path: Path, pki: Path, server: int) -> None:
    cluster = {"certificate-authority-data": b64(pki / "ca.crt")}
    with pytest.raises(ClusterError, match="cannot reach the API server") as refused:
        kube(tmp_path, pki, server, cluster, {}).list_services("x")  # cert is for kube.test
    # Asking again cannot fix a certificate: not an outage that waits retry.
    assert not isinstance(refused.value, UnavailableError)
    insecure = kube(tmp_path, pki, server, {}, {"token": "t"},
                    ConnectionFlags(insecure_skip_tls_verify=True))
    assert insecure.list_services("x") == []


def test_401_names_the_user_and_context(tmp_path: Path, pki: Path, server: int) -> None:
    k = kube(tmp_path, pki, server, {"insecure-skip-tls-verify": True}, {"token": "bad"})
    with pytest.raises(ClusterError, match=r'unauthorized \(401\).*user "u" \(context a\)'):
        k.list_services("x")


def test_request_timeout_applies_to_rest(tmp_path: Path, pki: Path, server: int) -> None:
    k = kube(tmp_path, pki, server, {"insecure-skip-tls-verify": True}, {"token": "t"},
             ConnectionFlags(request_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="cannot reach the API server"):
        k.list_services("slow")
    assert time.monotonic() - started < 2.5


class RecordingProxy:
    """A small real http proxy on loopback: CONNECT tunnels, absolute-URI requests forwarded.
    Records each request line and its Proxy-Authorization. Every name resolves to loopback
    here (as a proxy may know names the client cannot resolve)."""

    def __init__(self) -> None:
        import socket

        self.seen: list[tuple[str, str | None]] = []
        self.hosts: list[str | None] = []
        self.refuse: bytes | None = None  # a status line to answer CONNECT with instead
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client: Any) -> None:
        import socket
        import urllib.parse

        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        auth = next((line.split(":", 1)[1].strip() for line in lines[1:]
                     if line.lower().startswith("proxy-authorization:")), None)
        self.seen.append((lines[0], auth))
        self.hosts.append(next((line.split(":", 1)[1].strip() for line in lines[1:]
                                if line.lower().startswith("host:")), None))
        method, target, _ = lines[0].split(" ")
        if method == "CONNECT" and self.refuse:
            client.sendall(self.refuse + b"\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        if method == "CONNECT":
            _, port = target.rsplit(":", 1)
            upstream = socket.create_connection(("127.0.0.1", int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
        else:  # forward, rewritten to origin form
            url = urllib.parse.urlsplit(target)
            upstream = socket.create_connection(("127.0.0.1", url.port or 80))
            rest = head.replace(target.encode(), (url.path + (f"?{url.query}" if url.query
                                                                else "")).encode(), 1)
        upstream.sendall(rest)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def _pipe(source: Any, target: Any) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    running = RecordingProxy()
    yield running
    running.close()


def test_rest_and_websockets_go_through_the_kubeconfigs_proxy(
        tmp_path: Path, pki: Path, server: int, proxy: RecordingProxy) -> None:
    from kubectl_keepalive.model import Pod

    Handler.seen.clear()
    cluster = {"certificate-authority-data": b64(pki / "ca.crt"), "tls-server-name": "kube.test",
               "proxy-url": f"http://jane:s%3Acret@127.0.0.1:{proxy.port}"}
    k = kube(tmp_path, pki, server, cluster, {"token": "t"})
    assert k.list_services("a") == []
    assert k.list_services("b") == []  # the tunnel is kept and used again
    basic = "Basic " + base64.b64encode(b"jane:s:cret").decode()
    assert [(line.rsplit(" ", 1)[0], auth) for line, auth in proxy.seen] == [
        (f"CONNECT 127.0.0.1:{server}", basic)]
    assert [s["path"] for s in Handler.seen] == ["/api/v1/namespaces/a/services",
                                                 "/api/v1/namespaces/b/services"]
    # The port-forward websocket takes the same proxy (the test server refuses the upgrade).
    with pytest.raises(ClusterError):
        k.read_admin(Pod("a", "p"), "listeners", 5.0)
    assert len(proxy.seen) == 2 and proxy.seen[1][0].startswith("CONNECT 127.0.0.1:")


def test_an_http_server_through_the_proxy_gets_absolute_urls(
        tmp_path: Path, proxy: RecordingProxy) -> None:
    Handler.seen.clear()
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = int(httpd.server_address[1])
        path = kubeconfig(tmp_path, {"server": f"http://127.0.0.1:{port}/prefix",
                                     "proxy-url": f"http://127.0.0.1:{proxy.port}"}, {})
        k = KubeCluster(resolve(path, None, None, {}))
        assert k.list_services("a") == []
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proxy.seen == [(f"GET http://127.0.0.1:{port}/prefix/api/v1/namespaces/a/services "
                           "HTTP/1.1", None)]
    assert Handler.seen[-1]["path"] == "/prefix/api/v1/namespaces/a/services"


def test_a_closed_idle_connection_is_replaced_not_reported(
        tmp_path: Path, pki: Path, server: int) -> None:
    k = kube(tmp_path, pki, server, {"insecure-skip-tls-verify": True}, {"token": "t"})
    assert k.list_services("x") == []
    pool, _ = k._transport._tls(k.connection.credentials.current())
    assert len(pool._idle) == 1
    for conn in pool._idle:  # the server (or a balancer) drops the idle connection
        conn.sock.shutdown(2)
    assert k.list_services("x") == []
    assert len(pool._idle) == 1 and pool._idle[0].sock is not None


def test_the_environments_proxy_carries_rest_and_websockets_unless_no_proxy(
        tmp_path: Path, pki: Path, server: int, proxy: RecordingProxy) -> None:
    """HTTPS_PROXY as kubectl reads it, for a server name only the proxy can resolve."""
    from kubectl_keepalive.model import Pod

    path = kubeconfig(tmp_path, {"server": f"https://kube.test:{server}",
                                 "certificate-authority-data": b64(pki / "ca.crt")},
                      {"token": "t"})
    env = {"HTTPS_PROXY": f"127.0.0.1:{proxy.port}"}
    k = KubeCluster(resolve(path, None, None, env), env=env)
    assert k.list_services("a") == []
    with pytest.raises(ClusterError):  # the test server refuses the upgrade
        k.read_admin(Pod("a", "p"), "listeners", 5.0)
    assert [line.split(" ")[:2] for line, _ in proxy.seen] == [
        ["CONNECT", f"kube.test:{server}"]] * 2
    # NO_PROXY sends both directly (and the name does not resolve here): nothing reaches it.
    proxy.seen.clear()
    direct = {**env, "NO_PROXY": ".test"}
    k = KubeCluster(resolve(path, None, None, direct), env=direct)
    with pytest.raises(UnavailableError):
        k.list_services("a")
    with pytest.raises(ClusterError):
        k.read_admin(Pod("a", "p"), "listeners", 5.0)
    assert proxy.seen == []


def test_an_ipv6_server_through_a_proxy_is_named_in_brackets(
        tmp_path: Path, pki: Path, server: int, proxy: RecordingProxy) -> None:
    Handler.seen.clear()
    k = KubeCluster(resolve(kubeconfig(tmp_path, {
        "server": f"https://[::1]:{server}", "tls-server-name": "kube.test",
        "certificate-authority-data": b64(pki / "ca.crt"),
        "proxy-url": f"http://127.0.0.1:{proxy.port}"}, {"token": "t"}), None, None, {}))
    assert k.list_services("a") == []
    assert proxy.seen[0][0].split(" ")[:2] == ["CONNECT", f"[::1]:{server}"]
    assert proxy.hosts == [f"[::1]:{server}"]
    assert Handler.seen[-1]["headers"]["Host"] == [f"[::1]:{server}"]


@pytest.mark.parametrize(("answer", "kind"), [
    (b"HTTP/1.1 503 Service Unavailable", UnavailableError),  # may pass: waited out
    (b"HTTP/1.1 407 Proxy Authentication Required", ClusterError),
])
def test_a_proxy_that_refuses_the_tunnel(tmp_path: Path, pki: Path, server: int,
                                         proxy: RecordingProxy, answer: bytes,
                                         kind: type[ClusterError]) -> None:
    proxy.refuse = answer
    k = kube(tmp_path, pki, server, {"insecure-skip-tls-verify": True,
                                     "proxy-url": f"http://127.0.0.1:{proxy.port}"},
             {"token": "t"})
    with pytest.raises(ClusterError, match=answer.split(b" ", 1)[1].decode()) as refused:
        k.list_services("a")
    assert isinstance(refused.value, UnavailableError) is (kind is UnavailableError)


def test_which_failures_may_pass() -> None:
    from kubectl_keepalive.kube.client.transport import passing
    from kubectl_keepalive.kube.client.tunnels import ProxyRefused

    assert passing(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert passing(ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"))
    assert passing(ConnectionRefusedError(111, "Connection refused"))
    assert passing(TimeoutError("timed out"))
    assert not passing(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert passing(ProxyRefused(502, "Bad Gateway"))
    assert not passing(ProxyRefused(403, "Forbidden"))
