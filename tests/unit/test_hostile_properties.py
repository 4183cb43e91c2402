"""Properties of the whole client and renderers against a server that answers anything:
arbitrary bytes or JSON as API answers, arbitrary error-channel text, arbitrary Envoy config
dumps, driven end to end through `main` against a loopback server (tests/wire/hostile_api.py).
Never exit 5, never a raw control character on the terminal, never a line past the cut."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_keepalive.cli.main import main
from tests.wire.hostile_api import (
    GOLDEN_DUMP,
    Conn,
    HostileApi,
    Request,
    a_list,
    accept_upgrade,
    gateway_pod,
    http_answer,
    serve_port_forward,
    write_kubeconfig,
)

LONGEST_LINE = 1500
EXIT_CODES = {0, 1, 3, 6}  # what a server's answers may lead to; never 5 (a bug) nor 2
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Answers:
    """What the server says next: the pods list's raw bytes, the admin answer, the error
    channel."""

    pods: bytes = b""
    admin: bytes = b""
    error_text: bytes | None = None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Answers, Path]]:
    answers = Answers()

    def pods(conn: Conn, _request: Request) -> bool:
        conn.send(http_answer(200, answers.pods))
        return True

    def port_forward(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_port_forward(conn, lambda _path: http_answer(200, answers.admin),
                           error_text=answers.error_text)
        return False

    server = HostileApi(handlers={"pods": pods, "portforward": port_forward}).start()
    try:
        yield answers, write_kubeconfig(tmp_path_factory.mktemp("hostile"), server.url)
    finally:
        server.stop()


def run(kubeconfig: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "--request-timeout", "5s"], out, err, None,
                {"KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)})
    return code, out.getvalue() + err.getvalue()


def assert_safe(code: int, text: str) -> None:
    assert code in EXIT_CODES, text[-2000:]
    assert all(c.isprintable() or c == "\n" for c in text), repr(text[-2000:])
    assert max((len(line) for line in text.splitlines()), default=0) <= LONGEST_LINE
    assert "Traceback" not in text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
POD_PATHS = ["metadata", "metadata.name", "metadata.labels", "metadata.ownerReferences",
             "metadata.annotations", "spec", "spec.containers", "status", "status.phase",
             "status.conditions", "metadata.deletionTimestamp"]


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_as_the_pods_list(served: tuple[Answers, Path], body: bytes) -> None:
    answers, kubeconfig = served
    answers.pods = body
    assert_safe(*run(kubeconfig, "status"))


@SETTINGS
@given(st.sampled_from(POD_PATHS), JSON)
def test_any_json_in_a_pods_field(served: tuple[Answers, Path], path: str, value: Any) -> None:
    answers, kubeconfig = served
    pod = copy.deepcopy(gateway_pod())
    *parents, last = path.split(".")
    here = pod
    for key in parents:
        here = here[key]
    here[last] = value
    answers.pods = json.dumps(a_list(pod)).encode()
    answers.admin = GOLDEN_DUMP.read_bytes()
    answers.error_text = None
    assert_safe(*run(kubeconfig, "status"))


@SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_error_channel_text(served: tuple[Answers, Path], text: bytes) -> None:
    answers, kubeconfig = served
    answers.pods = json.dumps(a_list(gateway_pod())).encode()
    answers.error_text = text
    code, output = run(kubeconfig, "status", "-o", "wide")
    assert_safe(code, output)
    assert code == 3


DUMP_NAMES = st.text(min_size=1, max_size=400)


@SETTINGS
@given(st.one_of(st.binary(max_size=2000).map(lambda b: ("raw", b)),
                 DUMP_NAMES.map(lambda n: ("name", n.encode("utf-8", "surrogatepass")))),
       st.sampled_from([["status"], ["status", "-o", "wide"], ["doctor", "--duration", "10m"]]))
def test_arbitrary_envoy_dumps(served: tuple[Answers, Path], dump: tuple[str, bytes],
                               args: list[str]) -> None:
    """Bytes as the dump, or the golden dump with a listener and route named by any text."""
    answers, kubeconfig = served
    answers.pods = json.dumps(a_list(gateway_pod())).encode()
    answers.error_text = None
    kind, data = dump
    if kind == "raw":
        answers.admin = data
    else:
        name = json.dumps(data.decode("utf-8", "surrogatepass"))[1:-1]
        text = GOLDEN_DUMP.read_text().replace('"0.0.0.0_8080"', f'"{name}"')
        answers.admin = text.replace("httpbin.example.com", name).encode("utf-8",
                                                                          "surrogatepass")
    assert_safe(*run(kubeconfig, *args))


def test_the_served_gateway_is_read_when_the_server_behaves(
        served: tuple[Answers, Path]) -> None:
    """The harness itself: with honest answers, the golden listeners are in the table, so the
    properties above run through the client, the dump reader and the renderers."""
    answers, kubeconfig = served
    answers.pods = json.dumps(a_list(gateway_pod())).encode()
    answers.admin = GOLDEN_DUMP.read_bytes()
    answers.error_text = None
    code, output = run(kubeconfig, "status", "-o", "wide")
    assert code == 0, output
    assert "0.0.0.0_8080" in output
    answers.admin = GOLDEN_DUMP.read_text().replace('"0.0.0.0_8080"', '"a\\u001bb"').encode()
    code, output = run(kubeconfig, "status", "-o", "wide")
    assert code == 0 and "a\\x1bb" in output, output
