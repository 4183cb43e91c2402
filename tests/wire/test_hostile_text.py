"""Text from a server reaches the terminal escaped and cut, on every output path: the
port-forward error channel, a refused upgrade's Status message, exec stderr and the exec Status,
listener and route names in a config dump (status table, wide table, notes, doctor table), an
API error message, a proxy's refusal. Each case: the exit code, no raw control byte from the
server on stdout or stderr, no line past the cut (cut pieces and the plugin's words around
them). `-o json` and `-o yaml` keep the data, escaped by their encoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.wire.hostile_api import (
    GOLDEN_DUMP,
    HOSTILE,
    Conn,
    Request,
    accept_upgrade,
    assert_clean,
    hostile_api,
    http_answer,
    json_answer,
    run_plugin,
    serve_exec,
    serve_port_forward,
    status_body,
    write_kubeconfig,
)

pytestmark = pytest.mark.wire

LONGEST_LINE = 1500
LONG = HOSTILE + "Z" * 50_000  # far past the cut


def forbidden(conn: Conn, _request: Request) -> bool:
    conn.send(json_answer(403, status_body(403, "pods/portforward is forbidden")))
    return True


def assert_escaped(run: object, code: int) -> None:
    from tests.wire.hostile_api import Run

    assert isinstance(run, Run)
    assert run.code == code, run.text
    assert "\\x1b[2J" in run.text, run.text  # shown, as an escape
    assert_clean(run, LONGEST_LINE)


def test_the_port_forward_error_channel(tmp_path: Path) -> None:
    def error_channel(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_port_forward(conn, lambda _p: b"", error_text=LONG.encode() * 20)
        return False

    with hostile_api(portforward=error_channel) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status", "-o", "wide")
    assert_escaped(run, 3)


def test_a_refused_upgrades_message(tmp_path: Path) -> None:
    def refused(conn: Conn, _request: Request) -> bool:
        conn.send(json_answer(500, status_body(500, HOSTILE + "Z" * 30_000)))
        return True

    with hostile_api(portforward=refused) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_escaped(run, 3)


def test_exec_stderr(tmp_path: Path) -> None:
    def failing(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_exec(conn, stderr=LONG.encode() * 20, status={
            "status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "1"}]}})
        return False

    with hostile_api(portforward=forbidden, exec=failing) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_escaped(run, 3)


def test_the_exec_status_message(tmp_path: Path) -> None:
    def failing(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_exec(conn, status={"status": "Failure", "message": LONG})
        return False

    with hostile_api(portforward=forbidden, exec=failing) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_escaped(run, 3)


def hostile_dump() -> bytes:
    """The golden dump with a listener and a virtual host named by the server's text."""
    text = GOLDEN_DUMP.read_text()
    name = json.dumps(LONG[:5000])[1:-1]
    text = text.replace('"0.0.0.0_8080"', f'"{name}"')
    text = text.replace("httpbin.example.com", name)
    return text.encode()


def dump_answer(conn: Conn, request: Request) -> bool:
    accept_upgrade(conn, request)
    serve_port_forward(conn, lambda _path: http_answer(200, hostile_dump()))
    return False


@pytest.mark.parametrize(("args", "names_shown"), [
    (["status"], False), (["status", "-o", "wide"], True),
    (["doctor", "--duration", "10m", "--all"], True)], ids=["status", "status-wide", "doctor"])
def test_listener_and_route_names_in_a_config_dump(tmp_path: Path, args: list[str],
                                                   names_shown: bool) -> None:
    with hostile_api(portforward=dump_answer) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), *args)
    assert run.code in (0, 6), run.text  # doctor: the balancer's idle timeout is unknown
    if names_shown:  # the default status table shows ports, not listener names
        assert_escaped(run, run.code)
    assert_clean(run, LONGEST_LINE)


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_documents_keep_the_names_with_their_encoders_escapes(tmp_path: Path,
                                                              output: str) -> None:
    with hostile_api(portforward=dump_answer) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status", "-o", output)
    assert run.code == 0, run.text
    for byte in (b"\x1b", b"\x07", b"\r"):
        assert byte not in run.stdout
    if output == "json":
        names = [lst["name"] for gw in json.loads(run.stdout)["gateways"]
                 for pod in gw["pods"] for lst in pod["listeners"]]
        assert LONG[:5000] in names  # the data itself, whole


def test_an_api_error_message(tmp_path: Path) -> None:
    def failing(conn: Conn, _request: Request) -> bool:
        conn.send(json_answer(500, status_body(500, HOSTILE + "Z" * 500_000)))
        return True

    with hostile_api(pods=failing) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_escaped(run, 3)
    assert run.stderr.decode().count("\n") == 1


def test_a_proxys_refusal(tmp_path: Path) -> None:
    def refusing(conn: Conn, _request: Request) -> bool:
        conn.send(f"HTTP/1.1 403 {HOSTILE.replace(chr(13), '')}{'Z' * 30_000}\r\n\r\n"
                  .encode())
        return False

    with hostile_api(other=refusing) as proxy:
        kubeconfig = write_kubeconfig(tmp_path, "https://127.0.0.1:9",
                                      proxy_url=f"http://127.0.0.1:{proxy.port}")
        run = run_plugin(kubeconfig, "status")
    assert_escaped(run, 3)
    assert run.stderr.decode().count("\n") == 1
