"""--request-timeout bounds the whole request, as client-go's http.Client.Timeout does: a server
(or proxy) that trickles its answer, or floods it at a steady pace, is given up on at the
deadline with one `error:` line and exit 3, whatever the step it stalls in: the CONNECT answer,
the TLS handshake, the head, the body, the websocket upgrade or the admin answer behind it.

Each case asserts an upper bound (the timeout plus a margin for the process to start and stop):
a hang test, not a speed target (those are in benchmarks/wire_limits.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.wire.hostile_api import (
    Conn,
    Request,
    a_list,
    accept_upgrade,
    assert_clean,
    gateway_pod,
    hostile_api,
    make_tls,
    read_client_frame,
    run_plugin,
    write_kubeconfig,
    ws_binary,
)

pytestmark = pytest.mark.wire

TIMEOUT = 2.0
MARGIN = 6.0  # process start, imports, teardown on a shared 2-core machine
LONGEST_LINE = 1500


def pods_body() -> bytes:
    return json.dumps(a_list(gateway_pod())).encode()


def trickled_pods(conn: Conn, _request: Request) -> bool:
    body = pods_body()
    conn.send(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode())
    conn.trickle(body, 0.5)
    return False


def trickled_head(conn: Conn, _request: Request) -> bool:
    conn.trickle(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 100, 0.5)
    return False


def paced_flood(conn: Conn, _request: Request) -> bool:
    """A chunked answer that never ends, 4 MiB/s: below the size bound within the timeout."""
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    while not conn.stopping.wait(1 / 64):
        conn.send(chunk)
    return False


def silent(conn: Conn, _request: Request) -> bool:
    conn.stopping.wait(60)
    return False


def assert_one_error_at_the_deadline(run: object, limit: float) -> None:
    from tests.wire.hostile_api import Run

    assert isinstance(run, Run)
    assert run.code == 3, run.text
    assert run.seconds < limit + MARGIN, f"took {run.seconds:.1f}s"
    assert run.stdout == b""
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "timed out" in lines[0]
    assert_clean(run, LONGEST_LINE)


@pytest.mark.parametrize("handler", [trickled_pods, trickled_head, paced_flood],
                         ids=["trickled-body", "trickled-head", "paced-flood"])
def test_a_slow_answer_ends_at_the_request_timeout(tmp_path: Path, handler: object) -> None:
    with hostile_api(pods=handler) as api:  # type: ignore[arg-type]
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status",
                         "--request-timeout", f"{TIMEOUT:g}s")
    assert_one_error_at_the_deadline(run, TIMEOUT)


def test_a_trickled_answer_over_tls_ends_at_the_request_timeout(tmp_path: Path) -> None:
    context, ca = make_tls(tmp_path)
    with hostile_api(tls=context, pods=trickled_pods) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url, ca=ca), "status",
                         "--request-timeout", f"{TIMEOUT:g}s")
    assert_one_error_at_the_deadline(run, TIMEOUT)


def test_a_server_silent_in_the_tls_handshake_is_given_up_on(tmp_path: Path) -> None:
    """A plain TCP server that never answers the ClientHello."""
    with hostile_api(other=silent, pods=silent) as api:
        url = api.url.replace("http://", "https://")
        run = run_plugin(write_kubeconfig(tmp_path, url), "status",
                         "--request-timeout", f"{TIMEOUT:g}s")
    assert_one_error_at_the_deadline(run, TIMEOUT)


def test_a_proxy_trickling_its_connect_answer_ends_at_the_request_timeout(
        tmp_path: Path) -> None:
    def trickled_connect(conn: Conn, request: Request) -> bool:
        assert request.method == "CONNECT"
        conn.trickle(b"HTTP/1.1 200 Connection established\r\n" + b"X: y\r\n" * 50, 0.5)
        return False

    with hostile_api(other=trickled_connect) as proxy:
        kubeconfig = write_kubeconfig(tmp_path, "https://127.0.0.1:9",
                                      proxy_url=f"http://127.0.0.1:{proxy.port}")
        run = run_plugin(kubeconfig, "status", "--request-timeout", f"{TIMEOUT:g}s")
        assert [r.method for r in proxy.seen] == ["CONNECT"]
    assert_one_error_at_the_deadline(run, TIMEOUT)


def test_a_trickled_websocket_upgrade_ends_at_the_request_timeout(tmp_path: Path) -> None:
    def trickled_upgrade(conn: Conn, _request: Request) -> bool:
        conn.trickle(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X: y\r\n" * 50, 0.5)
        return False

    with hostile_api(portforward=trickled_upgrade) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status",
                         "--request-timeout", f"{TIMEOUT:g}s", "--timeout", "30s")
    assert run.code == 3, run.text
    assert run.seconds < TIMEOUT + MARGIN, f"took {run.seconds:.1f}s"
    assert "timed out" in run.stderr.decode()
    assert_clean(run, LONGEST_LINE)


def test_a_trickled_admin_answer_ends_at_the_pods_timeout(tmp_path: Path) -> None:
    """Behind an accepted port-forward, Envoy's answer comes a byte at a time: status gives the
    pod up at its --timeout, reports it, and exits 3."""
    def trickled_admin(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        port = struct.pack("<H", 15000)
        conn.send(ws_binary(0, port) + ws_binary(1, port))
        read_client_frame(conn)  # the admin GET
        conn.send(ws_binary(0, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"))
        while not conn.stopping.wait(0.5):
            conn.send(ws_binary(0, b" "))
        return False

    with hostile_api(portforward=trickled_admin) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status", "--timeout", "2s")
    assert run.code == 3, run.text
    assert run.seconds < 2 + MARGIN, f"took {run.seconds:.1f}s"
    assert "timed out" in run.stderr.decode()
    assert_clean(run, LONGEST_LINE)
