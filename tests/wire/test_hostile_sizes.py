"""Every answer has a size bound: an announced length past it is refused before anything is
read (no MemoryError for Content-Length 10^15), an endless body once it passes it, with one
error naming the bound and exit 3. Large but honest answers still pass whole: one 32 MiB
websocket frame through port-forward, 32 MiB of exec stdout (the exec fallback)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.wire.hostile_api import (
    GOLDEN_DUMP,
    Conn,
    Request,
    accept_upgrade,
    assert_clean,
    hostile_api,
    http_answer,
    json_answer,
    read_client_frame,
    run_plugin,
    serve_exec,
    serve_port_forward,
    status_body,
    write_kubeconfig,
    ws_binary,
)

pytestmark = pytest.mark.wire

LONGEST_LINE = 1500
BIG = 32 * 1024 * 1024


def padded_dump(size: int) -> bytes:
    """The golden config dump with trailing whitespace (valid JSON) up to `size` bytes."""
    dump = GOLDEN_DUMP.read_bytes()
    return dump + b" " * (size - len(dump))


def absurd_length(conn: Conn, _request: Request) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000000000000000\r\n\r\n{\"items\": [")
    conn.stopping.wait(30)
    return False


def endless_chunks(conn: Conn, _request: Request) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"
    while True:
        conn.send(chunk)


def endless_until_close(conn: Conn, _request: Request) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    while True:
        conn.send(b" " * 0x100000)


def assert_size_error(run: object, bound: str) -> None:
    from tests.wire.hostile_api import Run

    assert isinstance(run, Run)
    assert run.code == 3, run.text
    assert "MemoryError" not in run.text
    errors = [line for line in run.stderr.decode().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.text
    assert f"larger than {bound}" in run.text and "--max-answer-size" in run.text, run.text
    assert_clean(run, LONGEST_LINE)


@pytest.mark.parametrize("handler", [absurd_length, endless_chunks, endless_until_close],
                         ids=["content-length-1e15", "endless-chunks", "endless-until-close"])
def test_an_oversized_api_answer_is_one_error_naming_the_bound(tmp_path: Path,
                                                               handler: object) -> None:
    with hostile_api(pods=handler) as api:  # type: ignore[arg-type]
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_size_error(run, "64 MiB")
    assert run.stdout == b""


def test_an_admin_answer_announcing_1e15_bytes_is_the_pods_size_error(tmp_path: Path) -> None:
    def absurd_admin(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_port_forward(conn, lambda _path: b"HTTP/1.1 200 OK\r\n"
                           b"Content-Length: 1000000000000000\r\n\r\n{")
        return False

    with hostile_api(portforward=absurd_admin) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_size_error(run, "256 MiB")


def test_a_websocket_frame_announcing_2_to_the_62_bytes_is_refused(tmp_path: Path) -> None:
    def huge_frame_head(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        conn.send(struct.pack(">BBQ", 0x82, 127, 1 << 62) + b"\x00")
        conn.stopping.wait(30)
        return False

    with hostile_api(portforward=huge_frame_head) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_size_error(run, "256 MiB")


def test_one_32_mib_websocket_frame_is_read_whole(tmp_path: Path) -> None:
    """The admin answer in a single frame: the listeners behind it are in the table."""
    def one_frame(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_port_forward(conn, lambda _path: http_answer(200, padded_dump(BIG)),
                           piece=BIG + 4096)
        return False

    with hostile_api(portforward=one_frame) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status", "-o", "wide")
    assert run.code == 0, run.text
    assert "0.0.0.0_8080" in run.stdout.decode()
    assert_clean(run, LONGEST_LINE)


def test_32_mib_of_exec_stdout_is_read_whole(tmp_path: Path) -> None:
    """Port-forward forbidden: the exec fallback carries the dump as stdout, one frame."""
    def forbidden(conn: Conn, _request: Request) -> bool:
        conn.send(json_answer(403, status_body(403, "pods/portforward is forbidden")))
        return True

    def dump_as_stdout(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_exec(conn, stdout=padded_dump(BIG), piece=BIG + 4096)
        return False

    with hostile_api(portforward=forbidden, exec=dump_as_stdout) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status", "-o", "wide")
    assert run.code == 0, run.text
    assert "0.0.0.0_8080" in run.stdout.decode()
    assert_clean(run, LONGEST_LINE)


@pytest.mark.parametrize(("flags", "bound"), [((), "256 MiB"), (("--max-answer-size", "8Mi"),
                                                                 "8 MiB")], ids=["default", "8Mi"])
def test_exec_stdout_past_the_bound_is_the_size_error(tmp_path: Path, flags: tuple[str, ...],
                                                      bound: str) -> None:
    """Stdout in pieces that together pass the bound."""
    def forbidden(conn: Conn, _request: Request) -> bool:
        conn.send(json_answer(403, status_body(403, "pods/portforward is forbidden")))
        return True

    def endless_stdout(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        while True:
            conn.send(ws_binary(1, b" " * 0x100000))

    with hostile_api(portforward=forbidden, exec=endless_stdout) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status", *flags)
    assert_size_error(run, bound)



def test_the_flag_raises_and_lowers_the_bound(tmp_path: Path) -> None:
    """A 70 MiB pods list passes the 64 MiB default only with --max-answer-size raised; the
    admin answer's bound follows the flag too."""
    from tests.wire.hostile_api import a_list, gateway_pod

    listed = json.dumps(a_list(gateway_pod())).encode()
    big = listed + b" " * (70 * 1024 * 1024 - len(listed))

    def pods(conn: Conn, _request: Request) -> bool:
        conn.send(http_answer(200, big))
        return True

    with hostile_api(pods=pods) as api:
        kubeconfig = write_kubeconfig(tmp_path, api.url)
        refused = run_plugin(kubeconfig, "status")
        raised = run_plugin(kubeconfig, "status", "-o", "wide", "--max-answer-size", "128Mi")
        lowered = run_plugin(kubeconfig, "status", "--max-answer-size=1Mi")
    assert_size_error(refused, "64 MiB")
    assert raised.code == 0 and "0.0.0.0_8080" in raised.stdout.decode(), raised.text
    assert lowered.code == 3 and "larger than 1 MiB" in lowered.text, lowered.text


@pytest.mark.parametrize("value", ["ten", "10MB", "-1", "0", "65Gi", "1e9", "\x1b[2J"])
def test_a_bad_size_is_a_usage_error_before_any_contact(tmp_path: Path, value: str) -> None:
    with hostile_api() as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status",
                         "--max-answer-size", value)
        assert api.seen == []
    assert run.code == 2, run.text
    assert run.stderr.decode().startswith("error: --max-answer-size")
    assert_clean(run, LONGEST_LINE)


def test_an_endless_chunked_admin_answer_is_the_size_error(tmp_path: Path) -> None:
    """Behind the port-forward, Envoy's answer never ends: the bound (lowered to 8 MiB here)
    stops it, not the memory."""
    def endless_admin(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        port = struct.pack("<H", 15000)
        conn.send(ws_binary(0, port) + ws_binary(1, port))
        read_client_frame(conn)  # the admin GET
        conn.send(ws_binary(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
        chunk = ws_binary(0, b"100000\r\n" + b" " * 0x100000 + b"\r\n")
        while True:
            conn.send(chunk)

    with hostile_api(portforward=endless_admin) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status",
                         "--max-answer-size", "8Mi")
    assert_size_error(run, "8 MiB")
