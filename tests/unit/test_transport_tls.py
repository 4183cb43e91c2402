"""The transport against a real TLS server on loopback: the kubeconfig's CA, client certificate
(as *-data: loaded through temporary files), tls-server-name, insecure mode, impersonation
headers, 401 and --request-timeout. Certificates are made by the openssl command."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.errors import ClusterError, UnavailableError
from kubectl_keepalive.kube import KubeCluster
from kubectl_keepalive.kubeconfig import ConnectionFlags, resolve


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


@pytest.fixture(scope="module")
def server(pki: Path) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.load_verify_locations(pki / "ca.crt")
    context.verify_mode = ssl.CERT_OPTIONAL
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kube(tmp_path: Path, pki: Path, port: int, cluster: dict[str, Any],
         user: dict[str, Any], flags: ConnectionFlags | None = None) -> KubeCluster:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "c",
                                                                        "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               **cluster}}],
        "users": [{"name": "u", "user": user}]}))
    return KubeCluster(resolve(str(path), None, None, {}, flags=flags))


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
