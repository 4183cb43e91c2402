"""One probe against loopback servers that answer, close, reset, stay silent, lie, or sit
behind a CONNECT proxy: the outcome, the detail, the count, and the bounds on what is read."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from kubectl_keepalive.probe import proxyenv, session, targets, wire
from tests.support.probe_servers import HoldServer, connect_proxy, make_pki

FAST = session.Settings(connect_timeout=2, answer_timeout=1.5, insecure=False, sni_given=False)


def probe(url: str, hold: float = 1.0, proxy: proxyenv.Proxy | None = None,
          settings: session.Settings = FAST, host: str | None = None) -> session.Result:
    target = targets.from_url(url, host)
    return session.run(target, hold, proxy, settings, session.Progress(hold), threading.Event())


def test_an_answer_after_the_silence_is_survived_and_the_servers_probes_are_counted() -> None:
    with HoldServer("answer", keepalive=(1, 1, 5)) as server:
        result = probe(f"http://127.0.0.1:{server.port}/healthz", hold=2.6)
    assert result.outcome == "survived" and result.statuses == (200, 200)
    assert result.probes_seen == 2 and result.probes_note == ""  # at about 1 s and 2 s
    assert result.held_s >= 2.6
    # Two requests on one connection, with the Host the URL names.
    assert len(server.requests) == 2
    assert all(r.startswith(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:") for r in server.requests)


@pytest.mark.parametrize(("then", "outcome"), [("close", "closed"), ("reset", "reset"),
                                               ("silent", "no answer")])
def test_a_cut_is_told_by_what_came_back(then: str, outcome: str) -> None:
    with HoldServer(then) as server:
        result = probe(f"http://127.0.0.1:{server.port}/")
    assert result.outcome == outcome and result.cut
    assert result.detail.startswith("cut at some point in the 1s of silence")
    assert result.probes_seen == 0 and result.statuses == (200,)


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = probe(f"http://127.0.0.1:{port}/")
    assert result.outcome == "unreachable" and "refused the connection" in result.detail
    assert not result.cut and result.held_s == 0


@pytest.mark.parametrize(("first", "says"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "ends the connection"),
    (b"HTTP/1.1 200 OK\r\n\r\nbody until close", "ends the connection"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "larger than 1024 KiB"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "exceed 64 KiB"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.1 answer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk"),
])
def test_a_first_answer_that_cannot_be_held_or_breaks_the_bounds(first: bytes, says: str) -> None:
    with HoldServer("answer", first=first) as server:
        result = probe(f"http://127.0.0.1:{server.port}/")
    assert result.outcome == "unreachable" and says in result.detail, result.detail


def test_server_text_is_escaped_and_bounded() -> None:
    first = b"\x1b[31mHTTP/1.1 200\x07\r\n\r\n"
    with HoldServer("answer", first=first) as server:
        result = probe(f"http://127.0.0.1:{server.port}/")
    assert result.outcome == "unreachable"
    assert "\x1b" not in result.detail and "\x07" not in result.detail
    assert "\\x1b" in result.detail


def test_a_chunked_first_answer_is_read_whole_and_the_connection_held() -> None:
    first = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    with HoldServer("answer", first=first) as server:
        result = probe(f"http://127.0.0.1:{server.port}/")
    assert result.outcome == "survived" and result.statuses == (404, 200)  # 404 proves the path


def test_through_a_connect_proxy_the_probes_are_not_visible() -> None:
    with HoldServer("answer", keepalive=(1, 1, 5)) as server, connect_proxy() as (port, heads):
        proxy = proxyenv.choose("http", "127.0.0.1",
                                {"http_proxy": f"http://user:pw@127.0.0.1:{port}"})
        result = probe(f"http://127.0.0.1:{server.port}/", hold=1.5, proxy=proxy)
    assert result.outcome == "survived"
    assert result.probes_seen is None and result.probes_note == session.PROXY_HIDES
    assert result.proxy == f"127.0.0.1:{port}"  # never the credentials
    assert heads[0].startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwdw==" in heads[0]


def test_a_proxy_that_refuses_connect_is_named_with_its_answer_escaped() -> None:
    with connect_proxy(b"HTTP/1.1 407 Auth\x1b[2J needed\r\n\r\n") as (port, _):
        proxy = proxyenv.Proxy("127.0.0.1", port, "https_proxy")
        result = probe("http://198.18.0.1/", proxy=proxy)
    assert result.outcome == "unreachable"
    assert f"the proxy 127.0.0.1:{port} refused CONNECT 198.18.0.1:80: 407" in result.detail
    assert "\x1b" not in result.detail


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"), "app.probe.test")


def _tls_server(pki: Path, require_sni: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    if require_sni:
        def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> int | None:
            return None if name == "app.probe.test" else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        context.sni_callback = sni  # type: ignore[assignment]
    return context


def test_tls_with_a_server_name_checks_the_certificate(
        pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    checked = session.Settings(2, 1.5, insecure=False, sni_given=True)
    with HoldServer("answer", tls=_tls_server(pki, require_sni=True)) as server:
        ok = probe(f"https://127.0.0.1:{server.port}/", host="app.probe.test", settings=checked)
    with HoldServer("answer", tls=_tls_server(pki, require_sni=False)) as server:
        # Not the name on the certificate: refused, and the way out named.
        wrong = probe(f"https://127.0.0.1:{server.port}/", host="other.probe.test",
                      settings=checked)
    assert ok.outcome == "survived" and ok.target.server_name == "app.probe.test"
    assert wrong.outcome == "unreachable" and "--insecure-target" in wrong.detail


def test_a_handshake_without_a_server_name_says_so(pki: Path) -> None:
    with HoldServer("answer", tls=_tls_server(pki, require_sni=True)) as server:
        result = probe(f"https://127.0.0.1:{server.port}/",
                       settings=session.Settings(2, 1.5, insecure=True, sni_given=False))
    assert result.outcome == "unreachable"
    assert "no --host was given, so no server name was sent" in result.detail


def test_insecure_skips_the_certificate_check(pki: Path) -> None:
    with HoldServer("answer", tls=_tls_server(pki, require_sni=False)) as server:
        result = probe(f"https://127.0.0.1:{server.port}/",
                       settings=session.Settings(2, 1.5, insecure=True, sni_given=False))
    assert result.outcome == "survived"


def test_the_probes_own_socket_has_keepalive_off() -> None:
    with HoldServer("answer") as server:
        target = targets.from_url(f"http://127.0.0.1:{server.port}/", None)
        conn = wire.open_connection(target, None, None, 2, False)
        try:
            assert conn.raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        finally:
            conn.close()


def test_an_address_without_a_host_is_checked_against_the_certificate(
        pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    with HoldServer("answer", tls=_tls_server(pki, require_sni=False)) as server:
        result = probe(f"https://127.0.0.1:{server.port}/")  # no SNI; the name is not the IP
    assert result.outcome == "unreachable"
    assert "certificate" in result.detail and "--insecure-target" in result.detail


def test_a_second_answer_that_breaks_the_bounds_still_proves_the_connection_survived() -> None:
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"
    with HoldServer("answer", second=huge) as server:
        result = probe(f"http://127.0.0.1:{server.port}/")
    assert result.outcome == "survived" and not result.cut
    assert "but an answer body larger than 1024 KiB" in result.detail
