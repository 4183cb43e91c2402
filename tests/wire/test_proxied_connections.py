"""Connections through real proxies (tests/wire/proxy_lab.py) as the client's pool uses them.

An answer that ends with its connection, and a kept connection the server dropped without
close_notify, must read and retry the same through an https:// proxy (the API server's TLS
inside the proxy's: kube/client/nested_tls.py) as through an http:// one and directly. A
failure on the way to the proxy names the proxy, and whether it may pass stays its cause's.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from kubectl_keepalive.kube.client.httppool import HttpPool, proxy_route
from kubectl_keepalive.kube.client.transport import passing
from kubectl_keepalive.kube.client.tunnels import ProxyHopError
from tests.wire.pki import Pki
from tests.wire.proxy_lab import ProxyLab
from tests.wire.recorder import free_port

pytestmark = pytest.mark.wire

BODY = b"k" * 100_000  # several TLS records, so the answer outlives its first read


class ScriptedApi:
    """A TLS server on loopback answering every GET with BODY: with `Connection: close`
    (then closing), or keeping the connection and dropping it, without close_notify, when the
    second request arrives on it."""

    def __init__(self, pki: Pki, mode: str) -> None:
        self.mode = mode
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(pki.server.cert, pki.server.key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.answered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                self._answer(conn)
        except OSError:
            pass
        finally:
            raw.close()

    def _answer(self, conn: ssl.SSLSocket) -> None:
        close = self.mode == "close"
        served = 0
        while self._request(conn):
            if self.mode == "drop-second" and served == 1:
                return  # closed by the caller; CPython sends no close_notify: a ragged end
            served += 1
            self.answered += 1  # before the answer: the client may see it before we go on
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + (b"Connection: close\r\n" if close else b"")
                         + b"Content-Length: %d\r\n\r\n" % len(BODY))
            conn.sendall(BODY)
            if close:
                return

    @staticmethod
    def _request(conn: ssl.SSLSocket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        return True

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca.cert))


def _pool(api: ScriptedApi, context: ssl.SSLContext, proxy: str | None) -> HttpPool:
    return HttpPool(f"https://127.0.0.1:{api.port}", context, proxy_url=proxy)


def _proxies(lab: ProxyLab) -> Iterator[str | None]:
    yield None
    yield f"http://127.0.0.1:{lab.ports['tinyproxy']}"
    yield f"https://127.0.0.1:{lab.ports['https']}"
    yield f"socks5://127.0.0.1:{lab.ports['dante']}"


ROUTES = ["direct", "http", "https", "socks5"]


@pytest.mark.parametrize(("mode", "requests"), [("close", 2), ("drop-second", 3)],
                         ids=["answer-ends-with-its-connection", "kept-connection-dropped"])
@pytest.mark.parametrize("route", ROUTES)
def test_every_answer_arrives_whole_on_every_route(
        route: str, mode: str, requests: int, proxy_lab: ProxyLab, pki: Pki,
        client_context: ssl.SSLContext) -> None:
    """`close`: each answer ends with its connection, read after http.client closed it.
    `drop-second`: the server drops a kept connection when the second request arrives on it,
    without close_notify; the GET is sent again on a new connection, once."""
    proxy = dict(zip(ROUTES, _proxies(proxy_lab)))[route]
    api = ScriptedApi(pki, mode)
    pool = _pool(api, client_context, proxy)
    try:
        for _ in range(requests):
            assert pool.request("GET", "/x", [], None, 10) == (200, BODY)
    finally:
        pool.close()
        api.close()
    assert api.answered == requests


def _fails_at_the_proxy(pki: Pki, context: ssl.SSLContext, proxy: str) -> ProxyHopError:
    """The error of one GET to a working API server through `proxy`, which must fail there."""
    api = ScriptedApi(pki, "close")
    pool = _pool(api, context, proxy)
    try:
        with pytest.raises(ProxyHopError) as caught:
            pool.request("GET", "/x", [], None, 5)
    finally:
        pool.close()
        api.close()
    return caught.value


def test_a_proxy_that_is_not_there_is_named_and_may_pass(
        pki: Pki, client_context: ssl.SSLContext) -> None:
    closed = free_port()
    error = _fails_at_the_proxy(pki, client_context,
                                f"http://jane:pw-secret@127.0.0.1:{closed}")
    assert str(error).startswith(f"the proxy 127.0.0.1:{closed}: ")
    assert isinstance(error.cause, ConnectionRefusedError)
    assert passing(error) and "pw-secret" not in str(error)


def _plain_http_answer(listener: socket.socket) -> None:
    """A plain-HTTP proxy that answers at once, whatever arrives (TLS from a client that took
    it for an https:// proxy)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_https_to_a_plain_http_proxy_is_named_and_will_not_pass(
        pki: Pki, client_context: ssl.SSLContext) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    plain = listener.getsockname()[1]
    threading.Thread(target=_plain_http_answer, args=(listener,), daemon=True).start()
    try:
        error = _fails_at_the_proxy(pki, client_context, f"https://127.0.0.1:{plain}")
    finally:
        listener.close()
    assert str(error).startswith(f"the proxy 127.0.0.1:{plain}: ")
    assert isinstance(error.cause, ssl.SSLError) and not passing(error)


@pytest.mark.parametrize(("url", "port"), [
    ("socks5://bastion", 1080), ("socks5h://bastion", 1080), ("https://bastion", 443),
    ("http://bastion", 80), ("socks5://bastion:9050", 9050),
])
def test_a_proxy_without_a_port_gets_its_schemes_own(url: str, port: int) -> None:
    """As Go's net/http: SOCKS5's port is 1080."""
    assert proxy_route(url, None, None).endpoint.port == port
