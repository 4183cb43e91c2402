"""A hostile or broken SOCKS5 or https:// proxy (`proxy-url`) can never hang the command, print a
secret or reach the terminal raw, and a rollout wait asks again only when what it said may pass.

Each proxy is a script on loopback: it trickles its replies against --request-timeout, says
nothing, picks a method the client never offered, breaks the SOCKS5 framing, refuses with each
reply code, closes mid-handshake, shows the wrong certificate, answers CONNECT with garbage or
with more than the bound. The plugin runs as kubectl runs it (`python -m kubectl_keepalive`, the
tree this file is in): the exit code, one `error:` line and nothing raw on the terminal are
asserted there; whether a rollout wait would ask again (transport.passing: the failure is an
UnavailableError) is asserted on the real transport in this process. Two proxies that work, a
SOCKS5 and an https one relaying to a real API server, show that the scripts speak the
protocols right, so a failure below is the client's.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_keepalive.errors import ClusterError, UnavailableError
from kubectl_keepalive.kube.client.connection import build
from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags, resolve
from kubectl_keepalive.kube.client.transport import Transport
from tests.support.shuttle import shuttle
from tests.wire.hostile_api import (
    CONTROL_BYTES,
    HOSTILE,
    Closed,
    Conn,
    HostileApi,
    Run,
    assert_clean,
    hostile_api,
    make_tls,
    run_plugin,
    write_kubeconfig,
)

pytestmark = pytest.mark.wire

TIMEOUT = 1.0  # --request-timeout of every run: each trickled byte (0.5 s apart) is in time
SLACK = 4.0  # process start, imports and teardown on a shared 2-core machine
LIMIT = 30.0  # a run still going by then is killed: an implementation that hangs
LONGEST_LINE = 1500
NOWHERE = "https://api.invalid:6443"  # never resolved here: a SOCKS5 proxy gets the name
PASSWORD = "s3cret-Pass-9"  # a test value that the output must never show

# -- running the plugin ----------------------------------------------------------------------------


def run(kubeconfig: Path, *args: str) -> Run:
    """`kubectl-keepalive status --request-timeout ...` in a process of its own, killed (by
    its pid) past LIMIT."""
    return run_plugin(kubeconfig, "status", "--request-timeout", f"{TIMEOUT:g}s", *args,
                      limit=LIMIT)


def one_error(result: Run, *words: str) -> str:
    """Exit 3, nothing on stdout, one `error:` line that has `words`, nothing raw; the line."""
    assert result.code == 3, result.text
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    assert_clean(result, LONGEST_LINE)
    return lines[0]


def timed_out(result: Run) -> None:
    one_error(result, "timed out")
    assert result.seconds < TIMEOUT + SLACK, f"took {result.seconds:.1f}s"


def failure(kubeconfig: Path, timeout: float = TIMEOUT) -> ClusterError:
    """The error of one request through the real transport, in this process."""
    resolved = resolve(str(kubeconfig), None, None, {}, ConnectionFlags(request_timeout=timeout))
    transport = Transport(build(resolved, env={}))
    with pytest.raises(ClusterError) as caught:
        transport.request("GET", "/api/v1/namespaces/istio-system/pods")
    return caught.value


def passing(kubeconfig: Path) -> bool:
    return isinstance(failure(kubeconfig), UnavailableError)


# -- the scripted proxy ----------------------------------------------------------------------------

Script = Callable[["ScriptedProxy", Conn], None]


@dataclass
class ScriptedProxy(HostileApi):
    """HostileApi's listener and threads (TLS first when `tls`), each connection given to
    `script` instead of the API server's routes. What scripts read is kept in `heard`."""

    script: Script | None = None
    heard: list[object] = field(default_factory=list)

    def _one(self, conn: Conn) -> bool:
        assert self.script is not None
        self.script(self, conn)
        return False


@contextlib.contextmanager
def scripted(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[ScriptedProxy]:
    proxy = ScriptedProxy(tls=tls, script=script)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def hold(conn: Conn) -> None:
    """Say nothing more until the test is over (or the client goes)."""
    with contextlib.suppress(Closed):
        while not conn.stopping.is_set():
            conn.recv_some()


def relay(conn: Conn, port: int) -> None:
    """Both ways between the client and 127.0.0.1:port until either side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as upstream:
        upstream.settimeout(None)
        if conn.buffer:
            upstream.sendall(conn.buffer)
        shuttle(conn.sock, upstream, conn.stopping)


# -- SOCKS5, the server's side (RFC 1928, RFC 1929) ------------------------------------------------

NO_AUTH, GSSAPI, USER_PASS, NONE_ACCEPTABLE = 0x00, 0x01, 0x02, 0xFF
IPV4_ZERO = b"\x01" + bytes(6)  # bound address 0.0.0.0:0


def read_greeting(conn: Conn) -> bytes:
    """The methods the client offers."""
    _version, count = conn.read_exact(2)
    return conn.read_exact(count)


def read_user_pass(conn: Conn) -> tuple[bytes, bytes]:
    _version, size = conn.read_exact(2)
    user = conn.read_exact(size)
    (size,) = conn.read_exact(1)
    return user, conn.read_exact(size)


def read_connect(conn: Conn) -> tuple[str, int]:
    _version, _command, _reserved, kind = conn.read_exact(4)
    if kind == 0x01:
        host = socket.inet_ntop(socket.AF_INET, conn.read_exact(4))
    elif kind == 0x04:
        host = socket.inet_ntop(socket.AF_INET6, conn.read_exact(16))
    else:
        (size,) = conn.read_exact(1)
        host = conn.read_exact(size).decode("ascii")
    (port,) = struct.unpack(">H", conn.read_exact(2))
    return host, port


def reply(code: int, bound: bytes = IPV4_ZERO) -> bytes:
    return bytes([5, code, 0]) + bound


def domain(name: bytes, port: int = 0) -> bytes:
    return bytes([3, len(name)]) + name + struct.pack(">H", port)


def socks_up_to_connect(proxy: ScriptedProxy, conn: Conn) -> tuple[str, int]:
    """Greeting (no authentication chosen) and the CONNECT request, recorded."""
    proxy.heard.append(read_greeting(conn))
    conn.send(bytes([5, NO_AUTH]))
    target = read_connect(conn)
    proxy.heard.append(target)
    return target


def socks_config(folder: Path, proxy: ScriptedProxy, server: str = NOWHERE,
                 user_info: str = "", ca: Path | None = None) -> Path:
    return write_kubeconfig(folder, server, ca=ca,
                            proxy_url=f"socks5://{user_info}127.0.0.1:{proxy.port}")


# -- SOCKS5: a proxy that works, so that the scripts below are known to speak the protocol ---------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path, Path]:
    """The API server's (and the https proxy's) context for 127.0.0.1, the CA, the folder."""
    folder = Path(tmp_path_factory.mktemp("tls"))
    context, ca = make_tls(folder)
    return context, ca, folder


@pytest.mark.parametrize("user_info", ["", f"jane:{PASSWORD}@"], ids=["anonymous", "user-pass"])
def test_a_working_socks5_proxy_reaches_the_api_server(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path], user_info: str) -> None:
    context, ca, _ = tls_files

    def working(proxy: ScriptedProxy, conn: Conn) -> None:
        methods = read_greeting(conn)
        proxy.heard.append(methods)
        if user_info:
            conn.send(bytes([5, USER_PASS]))
            proxy.heard.append(read_user_pass(conn))
            conn.send(b"\x01\x00")
        else:
            conn.send(bytes([5, NO_AUTH]))
        host, port = read_connect(conn)
        proxy.heard.append((host, port))
        conn.send(reply(0, b"\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", port)))
        relay(conn, port)

    with hostile_api(tls=context) as api, scripted(working) as proxy:
        result = run(socks_config(tmp_path, proxy, api.url, user_info, ca))
        assert result.code == 0, result.text
        assert ("127.0.0.1", api.port) in proxy.heard
        if user_info:
            assert (b"jane", PASSWORD.encode()) in proxy.heard
            assert bytes([NO_AUTH, USER_PASS]) in proxy.heard
        else:
            assert bytes([NO_AUTH]) in proxy.heard
    assert PASSWORD not in result.text


# -- SOCKS5: slow or silent ------------------------------------------------------------------------


def trickling_from(phase: str) -> Script:
    """Every byte the proxy sends from `phase` on (method, auth, connect) comes 0.5 s after the
    last: each is in time for a per-read timeout, the whole never is. The connect reply has a
    255-byte bound name: a client that waits for it waits two minutes."""
    steps = ("method", "auth", "connect")

    def script(proxy: ScriptedProxy, conn: Conn) -> None:
        def send(data: bytes, step: str) -> None:
            if steps.index(step) >= steps.index(phase):
                conn.trickle(data, 0.5)
            else:
                conn.send(data)

        proxy.heard.append(read_greeting(conn))
        send(bytes([5, USER_PASS]), "method")
        read_user_pass(conn)
        send(b"\x01\x00", "auth")
        read_connect(conn)
        send(reply(0, domain(b"b" * 255)), "connect")
        hold(conn)

    return script


@pytest.mark.parametrize("phase", ["method", "auth", "connect"])
def test_a_trickling_socks5_proxy_is_given_up_at_the_deadline(tmp_path: Path,
                                                              phase: str) -> None:
    with scripted(trickling_from(phase)) as proxy:
        kubeconfig = socks_config(tmp_path, proxy, user_info=f"jane:{PASSWORD}@")
        timed_out(run(kubeconfig))
        if phase == "connect":  # no answer in time: a wait may ask again
            started = time.monotonic()
            assert passing(kubeconfig)
            assert time.monotonic() - started < TIMEOUT + 1


def test_a_silent_socks5_proxy_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    def silent(proxy: ScriptedProxy, conn: Conn) -> None:
        hold(conn)

    with scripted(silent) as proxy:
        timed_out(run(socks_config(tmp_path, proxy)))


# -- SOCKS5: refusals and broken framing -----------------------------------------------------------

# RFC 1928, section 6: the words of each reply code, and whether it says the target could not
# be reached (it may pass: a rollout wait asks again) or that the proxy will not do it.
REPLY_CODES = {
    1: ("general SOCKS server failure", True),
    2: ("not allowed by ruleset", False),
    3: ("network unreachable", True),
    4: ("host unreachable", True),
    5: ("connection refused", True),
    6: ("TTL expired", True),
    7: ("command not supported", False),
    8: ("address type not supported", False),
}


def refusing_with(code: int) -> Script:
    def script(proxy: ScriptedProxy, conn: Conn) -> None:
        socks_up_to_connect(proxy, conn)
        conn.send(reply(code))
        hold(conn)

    return script


@pytest.mark.parametrize("code", sorted(REPLY_CODES))
def test_each_socks5_reply_code_is_one_line_naming_it(tmp_path: Path, code: int) -> None:
    words, may_pass = REPLY_CODES[code]
    with scripted(refusing_with(code)) as proxy:
        kubeconfig = socks_config(tmp_path, proxy)
        line = one_error(run(kubeconfig), "SOCKS5", words)
        assert passing(kubeconfig) is may_pass
        assert ("api.invalid", 6443) in proxy.heard  # the name, for the proxy to resolve
    assert "timed out" not in line


@pytest.mark.parametrize("code", [9, 0x1B, 0xFF])
def test_an_unknown_socks5_reply_code_is_a_refusal(tmp_path: Path, code: int) -> None:
    with scripted(refusing_with(code)) as proxy:
        kubeconfig = socks_config(tmp_path, proxy)
        one_error(run(kubeconfig), "SOCKS5", f"{code:#x}"[2:])
        assert not passing(kubeconfig)


@pytest.mark.parametrize(("user_info", "method"), [
    ("", USER_PASS),  # user/password asked of a client that has none
    ("", GSSAPI),
    (f"jane:{PASSWORD}@", GSSAPI),
    ("", 0x1B),  # not a method at all: ESC
    (f"jane:{PASSWORD}@", NONE_ACCEPTABLE),  # none of those offered will do
])
def test_a_method_the_client_never_offered_is_refused(tmp_path: Path, user_info: str,
                                                      method: int) -> None:
    """Nothing is sent after the proxy's choice: no credentials, no CONNECT."""
    def choosing(proxy: ScriptedProxy, conn: Conn) -> None:
        offered = read_greeting(conn)
        conn.send(bytes([5, method]))
        hold(conn)
        proxy.heard.append((offered, conn.buffer))

    with scripted(choosing) as proxy:
        kubeconfig = socks_config(tmp_path, proxy, user_info=user_info)
        result = run(kubeconfig)
        one_error(result, "SOCKS5")
        assert not passing(kubeconfig)
    assert proxy.heard, "the proxy heard no greeting"
    for entry in proxy.heard:
        assert isinstance(entry, tuple)
        offered, then = entry
        assert method not in offered
        assert then == b"", "the client went on after a method it never offered"
    assert PASSWORD not in result.text


@pytest.mark.parametrize("answer", [
    b"\x04\x00",  # the method reply of SOCKS4's number
    b"\x00\x00",
])
def test_a_wrong_version_in_the_method_reply(tmp_path: Path, answer: bytes) -> None:
    def wrong(proxy: ScriptedProxy, conn: Conn) -> None:
        read_greeting(conn)
        conn.send(answer)
        hold(conn)

    with scripted(wrong) as proxy:
        kubeconfig = socks_config(tmp_path, proxy)
        one_error(run(kubeconfig), "SOCKS5")
        assert not passing(kubeconfig)


@pytest.mark.parametrize("answer", [
    b"\x04\x00\x00" + IPV4_ZERO,  # success, in the wrong version
    b"\x04\x5a" + bytes(6),  # SOCKS4's "granted"
    reply(0)[:2] + b"\x01" + IPV4_ZERO,  # success with a reserved byte that is not zero
    reply(0, b"\x07" + bytes(6)),  # success with an address type that does not exist
    reply(0, b"\x03\x04" + HOSTILE.encode()[:2] + b"\xff\xfe" + bytes(2)),  # not UTF-8
])
def test_a_broken_connect_reply(tmp_path: Path, answer: bytes) -> None:
    def broken(proxy: ScriptedProxy, conn: Conn) -> None:
        socks_up_to_connect(proxy, conn)
        conn.send(answer)
        hold(conn)

    with scripted(broken) as proxy:
        kubeconfig = socks_config(tmp_path, proxy)
        one_error(run(kubeconfig), "SOCKS5")
        assert not passing(kubeconfig)


@pytest.mark.parametrize("answer", [
    b"\x01\x01",  # RFC 1929: a status other than 0 is a failure
    b"\x05\x00",  # success, in SOCKS5's version where RFC 1929's belongs
], ids=["refused", "wrong-version"])
def test_a_socks5_auth_failure_never_shows_the_password(tmp_path: Path, answer: bytes) -> None:
    def failing(proxy: ScriptedProxy, conn: Conn) -> None:
        read_greeting(conn)
        conn.send(bytes([5, USER_PASS]))
        proxy.heard.append(read_user_pass(conn))
        conn.send(answer)
        hold(conn)

    with scripted(failing) as proxy:
        kubeconfig = socks_config(tmp_path, proxy, user_info=f"jane:{PASSWORD}@")
        results = [run(kubeconfig), run(kubeconfig, "-v", "9")]
        assert (b"jane", PASSWORD.encode()) in proxy.heard
        assert not passing(kubeconfig)  # the password will not become right by waiting
    one_error(results[0], "SOCKS5", "authentication")
    assert "jane" not in results[0].text
    for result in results:
        assert result.code == 3, result.text
        assert PASSWORD not in result.text
        assert_clean(result, LONGEST_LINE)


# -- SOCKS5: closed mid-handshake ------------------------------------------------------------------


def closing_after(step: str) -> Script:
    """Greeting read, then the proxy closes at `step`: before the method reply, before the
    CONNECT reply, or inside a connect reply whose bound name is longer than what it sends."""
    def script(proxy: ScriptedProxy, conn: Conn) -> None:
        read_greeting(conn)
        if step == "greeting":
            return
        conn.send(bytes([5, NO_AUTH]))
        proxy.heard.append(read_connect(conn))
        if step == "connect":
            return
        if step == "half-reply":
            conn.send(reply(0)[:2])
            return
        conn.send(reply(0, domain(b"x" * 200))[:60])  # "short-name": 200 announced, 51 sent

    return script


@pytest.mark.parametrize("step", ["greeting", "connect", "half-reply", "short-name"])
def test_a_socks5_proxy_closing_mid_handshake(tmp_path: Path, step: str) -> None:
    """A closed connection is a reset, as from an http proxy or the server itself: it may
    pass (a proxy restarting), so a rollout wait asks again."""
    with scripted(closing_after(step)) as proxy:
        kubeconfig = socks_config(tmp_path, proxy)
        result = run(kubeconfig)
        one_error(result, "SOCKS5")
        assert result.seconds < TIMEOUT + SLACK
        assert passing(kubeconfig)


def test_a_socks5_proxy_resetting_mid_handshake(tmp_path: Path) -> None:
    def resetting(proxy: ScriptedProxy, conn: Conn) -> None:
        read_greeting(conn)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with scripted(resetting) as proxy:
        kubeconfig = socks_config(tmp_path, proxy)
        one_error(run(kubeconfig))
        assert passing(kubeconfig)


def test_control_characters_after_a_socks5_reply_never_reach_the_terminal(
        tmp_path: Path) -> None:
    """A success whose bound name is an escape sequence, then an HTTP answer full of them in
    place of the server's TLS."""
    def hostile(proxy: ScriptedProxy, conn: Conn) -> None:
        socks_up_to_connect(proxy, conn)
        conn.send(reply(0, domain(HOSTILE.encode())))
        conn.send(f"HTTP/1.1 403 {HOSTILE}\r\n\r\n{HOSTILE}".encode())

    with scripted(hostile) as proxy:
        one_error(run(socks_config(tmp_path, proxy)))
        one_error(run(socks_config(tmp_path, proxy, "http://api.invalid:8080")))


# -- https:// proxies ------------------------------------------------------------------------------


def read_connect_request(conn: Conn) -> str:
    return conn.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n", 1)[0]


def connect_and_relay(proxy: ScriptedProxy, conn: Conn) -> None:
    """An http(s) proxy that works: CONNECT accepted, then a relay to the port it names."""
    line = read_connect_request(conn)
    proxy.heard.append(line)
    conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    relay(conn, int(line.split(" ")[1].rsplit(":", 1)[1]))


def https_config(folder: Path, proxy: ScriptedProxy, ca: Path, server: str = NOWHERE) -> Path:
    return write_kubeconfig(folder, server, ca=ca, proxy_url=f"https://127.0.0.1:{proxy.port}")


def test_a_working_https_proxy_reaches_the_api_server(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path]) -> None:
    """TLS to the proxy, CONNECT inside it, the API server's TLS inside that."""
    context, ca, _ = tls_files
    with hostile_api(tls=context) as api, scripted(connect_and_relay, tls=context) as proxy:
        result = run(https_config(tmp_path, proxy, ca, api.url))
        assert result.code == 0, result.text
        assert f"CONNECT 127.0.0.1:{api.port} HTTP/1.1" in proxy.heard


def trickle_server_flight(proxy: ScriptedProxy, conn: Conn, context: ssl.SSLContext) -> None:
    """Read the client's hello; send the real answer to it (ServerHello to Finished) a byte
    every 0.5 s: each read is in time, the handshake never is. Its size goes to `heard`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = context.wrap_bio(incoming, outgoing, server_side=True)
    head = conn.read_exact(5)  # the ClientHello's record
    incoming.write(head + conn.read_exact(struct.unpack(">H", head[3:])[0]))
    with contextlib.suppress(ssl.SSLWantReadError):
        session.do_handshake()
    flight = outgoing.read()
    proxy.heard.append(len(flight))
    conn.trickle(flight, 0.5)
    hold(conn)


def assert_trickled_long(proxy: ScriptedProxy) -> None:
    """The flight would have taken far past the deadline and its slack."""
    flight = proxy.heard[-1]
    assert isinstance(flight, int) and flight * 0.5 > 2 * (TIMEOUT + SLACK)


def test_an_https_proxy_trickling_its_tls_handshake(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path]) -> None:
    context, ca, _ = tls_files

    def trickling(proxy: ScriptedProxy, conn: Conn) -> None:
        trickle_server_flight(proxy, conn, context)

    with scripted(trickling) as proxy:
        kubeconfig = https_config(tmp_path, proxy, ca)
        timed_out(run(kubeconfig))
        assert passing(kubeconfig)
        assert_trickled_long(proxy)


def test_the_servers_tls_trickling_inside_the_https_proxys(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path]) -> None:
    """The API server's handshake runs inside the proxy's TLS (nested_tls), one proxy record
    per byte: it too ends at the deadline."""
    context, ca, _ = tls_files

    def trickling(proxy: ScriptedProxy, conn: Conn) -> None:
        read_connect_request(conn)
        conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        trickle_server_flight(proxy, conn, context)

    with scripted(trickling, tls=context) as proxy:
        timed_out(run(https_config(tmp_path, proxy, ca)))
        assert_trickled_long(proxy)


def test_an_https_proxy_trickling_its_connect_answer(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path]) -> None:
    context, ca, _ = tls_files

    def trickling(proxy: ScriptedProxy, conn: Conn) -> None:
        proxy.heard.append(read_connect_request(conn))
        conn.trickle(b"HTTP/1.1 200 Connection established\r\n" + b"X: y\r\n" * 100, 0.5)

    with scripted(trickling, tls=context) as proxy:
        timed_out(run(https_config(tmp_path, proxy, ca)))
        assert proxy.heard == ["CONNECT api.invalid:6443 HTTP/1.1"]


def other_certificate(folder: Path, ca_of: Path | None) -> ssl.SSLContext:
    """A server context whose certificate is for another name, from the CA in `ca_of`'s folder
    (the API server's own), or self-signed when None."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    (folder / "other.ext").write_text("subjectAltName=DNS:elsewhere.example\n")
    if ca_of is None:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
                "-out", "other.crt", "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1")
    else:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
                "other.csr", "-subj", "/CN=elsewhere.example")
        openssl("x509", "-req", "-in", "other.csr", "-CA", str(ca_of),
                "-CAkey", str(ca_of.with_suffix(".key")), "-CAcreateserial", "-out",
                "other.crt", "-days", "2", "-extfile", "other.ext")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "other.crt", folder / "other.key")
    return context


@pytest.mark.parametrize("issuer", ["same-ca", "self-signed"])
def test_an_https_proxy_with_the_wrong_certificate(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path], issuer: str) -> None:
    """Exit 3 naming the proxy's certificate (not the API server's), no CONNECT sent, and no
    waiting it out: a certificate does not change by itself."""
    _, ca, _ = tls_files
    context = other_certificate(tmp_path, ca if issuer == "same-ca" else None)

    def listening(proxy: ScriptedProxy, conn: Conn) -> None:
        with contextlib.suppress(Closed):
            proxy.heard.append(read_connect_request(conn))

    with scripted(listening, tls=context) as proxy:
        kubeconfig = https_config(tmp_path, proxy, ca)
        line = one_error(run(kubeconfig), "proxy 127.0.0.1", "certificate")
        assert not passing(kubeconfig)
        assert proxy.heard == []
    assert "API server's certificate" not in line


@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("coalesced", [True, False], ids=["one-write", "two-writes"])
@pytest.mark.parametrize("after", [
    HOSTILE.encode() + b"garbage\r\n" * 50,
    b"\x16\x03\x03\x00\x05" + b"\x1b" * 5,  # a TLS record's head, then not TLS
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",  # an answer before any request
], ids=["control-bytes", "bad-record", "plain-http"])
def test_a_proxy_answering_garbage_in_place_of_the_servers_tls(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path], scheme: str,
        coalesced: bool, after: bytes) -> None:
    """CONNECT accepted, then bytes the server cannot have sent (it speaks after the client):
    a clean error at once, not a wait for the deadline; in the same write as the answer too,
    where a client that reads past the answer's end would drop them and wait for TLS."""
    context, ca, _ = tls_files
    head = b"HTTP/1.1 200 Connection established\r\n\r\n"

    def garbage(proxy: ScriptedProxy, conn: Conn) -> None:
        read_connect_request(conn)
        if coalesced:
            conn.send(head + after)
        else:
            conn.send(head)
            time.sleep(0.05)  # two TLS records, two segments: read apart
            conn.send(after)
        hold(conn)

    with scripted(garbage, tls=context if scheme == "https" else None) as proxy:
        kubeconfig = write_kubeconfig(tmp_path, NOWHERE, ca=ca,
                                      proxy_url=f"{scheme}://127.0.0.1:{proxy.port}")
        result = run(kubeconfig)
        line = one_error(result)
        assert "timed out" not in line
        assert not passing(kubeconfig)


@pytest.mark.parametrize("status", [407, 503])
def test_an_https_proxy_refusing_connect_with_control_characters(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path], status: int) -> None:
    context, ca, _ = tls_files

    def refusing(proxy: ScriptedProxy, conn: Conn) -> None:
        read_connect_request(conn)
        reason = HOSTILE.replace("\r", "") + "Z" * 30_000
        conn.send(f"HTTP/1.1 {status} {reason}\r\n\r\n".encode())
        hold(conn)

    with scripted(refusing, tls=context) as proxy:
        kubeconfig = https_config(tmp_path, proxy, ca)
        one_error(run(kubeconfig), str(status))
        assert passing(kubeconfig) is (status >= 500)


def test_an_https_proxy_answer_larger_than_the_bound(
        tmp_path: Path, tls_files: tuple[ssl.SSLContext, Path, Path]) -> None:
    """An endless CONNECT answer is cut at the proxy answer's bound, well before the deadline."""
    context, ca, _ = tls_files

    def endless(proxy: ScriptedProxy, conn: Conn) -> None:
        read_connect_request(conn)
        conn.send(b"HTTP/1.1 200 Connection established\r\n")
        sent = 0
        with contextlib.suppress(Closed):
            while sent < 64 << 20:
                conn.send(b"X-Filler: " + b"y" * 1000 + b"\r\n")
                sent += 1012
        proxy.heard.append(sent)

    with scripted(endless, tls=context) as proxy:
        kubeconfig = https_config(tmp_path, proxy, ca)
        result = run(kubeconfig)
        one_error(result, "too long")
        assert result.seconds < TIMEOUT + SLACK
        assert not passing(kubeconfig)
    sent = proxy.heard[0]
    assert isinstance(sent, int) and sent < 16 << 20, "read far past the bound"


# -- a property: whatever a SOCKS5 proxy says after the greeting -----------------------------------

PROPERTY_TIMEOUT = 0.3


class Saying:
    """One proxy for every example: each connection answers with the example's bytes."""

    def __init__(self) -> None:
        self.phase = "method"
        self.data = b""
        self.close = True

    def script(self, _proxy: ScriptedProxy, conn: Conn) -> None:
        read_greeting(conn)
        if self.phase == "connect":
            conn.send(bytes([5, NO_AUTH]))
            read_connect(conn)
        conn.send(self.data)
        if not self.close:
            hold(conn)


@pytest.fixture(scope="module")
def saying() -> Iterator[tuple[Saying, ScriptedProxy]]:
    state = Saying()
    with scripted(state.script) as proxy:
        yield state, proxy


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(phase=st.sampled_from(["method", "connect"]), data=st.binary(max_size=300),
       close=st.booleans(), server=st.sampled_from([NOWHERE, "http://api.invalid:8080"]))
def test_arbitrary_socks5_replies_end_in_one_clean_error(
        saying: tuple[Saying, ScriptedProxy], tmp_path: Path, phase: str, data: bytes,
        close: bool, server: str) -> None:
    """The command's whole path in this process (main(), as the console script calls it): exit
    3 with one escaped `error:` line within the deadline, never 5, never a raw byte. A valid
    reply followed by a real server is the working proxy's test above."""
    from kubectl_keepalive.cli.main import main

    state, proxy = saying
    state.phase, state.data, state.close = phase, data, close
    kubeconfig = socks_config(tmp_path, proxy, server=server)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = main(["status", "--request-timeout", f"{PROPERTY_TIMEOUT:g}s"], out, err, None,
                {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}, io.StringIO())
    took = time.monotonic() - started
    text = out.getvalue() + err.getvalue()
    assert code == 3, text
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for byte in CONTROL_BYTES:
        assert byte.decode() not in text
    assert "\x00" not in text and "Traceback" not in text
    assert took < PROPERTY_TIMEOUT + 1.0, f"took {took:.2f}s"
