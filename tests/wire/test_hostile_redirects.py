"""A redirect is never a success and never followed: a 301, 302 or 307 on a REST read, on the
EnvoyFilter POST of `enable`, or on the port-forward upgrade is one error naming the Location
(escaped and cut), exit 3, and nothing is sent to the place it points to. Stricter than
client-go, which follows a redirect to another host with the credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wire.hostile_api import (
    HOSTILE,
    Conn,
    Handler,
    Request,
    assert_clean,
    hostile_api,
    http_answer,
    run_plugin,
    write_kubeconfig,
)

pytestmark = pytest.mark.wire

LONGEST_LINE = 1500


def redirect(status: int, location: str) -> Handler:
    def answer(conn: Conn, _request: Request) -> bool:
        conn.send(http_answer(status, b'{"items": []}', [("Location", location)]))
        return True
    return answer


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirected_read_is_an_error_naming_the_location(tmp_path: Path, status: int) -> None:
    with hostile_api() as elsewhere:
        target = f"{elsewhere.url}/api/v1/pods"
        with hostile_api(pods=redirect(status, target)) as api:
            run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
        assert elsewhere.seen == []
    assert run.code == 3, run.text
    assert run.stdout == b""
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert f"redirect ({status}) to {target}" in lines[0]
    assert_clean(run, LONGEST_LINE)


def test_a_redirect_location_is_escaped_and_cut(tmp_path: Path) -> None:
    # No CR: a header line ends there. Under http.client's bound of 64 KiB per header line.
    location = "http://evil.test/" + HOSTILE.replace("\r", "") + "A" * 60_000
    with hostile_api(pods=redirect(302, location)) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert run.code == 3, run.text
    assert "\\x1b[2J" in run.stderr.decode()
    assert "characters in all" in run.stderr.decode()
    assert_clean(run, LONGEST_LINE)


def test_a_redirected_envoyfilter_post_is_an_error(tmp_path: Path) -> None:
    with hostile_api() as elsewhere:
        target = f"{elsewhere.url}/apis/networking.istio.io/v1alpha3/envoyfilters"
        with hostile_api(create_envoyfilter=redirect(307, target)) as api:
            run = run_plugin(write_kubeconfig(tmp_path, api.url), "enable", "-y",
                             "--no-restart", "--timeout", "20s")
            posts = [r for r in api.seen if r.method == "POST"]
        assert elsewhere.seen == []
    assert run.code == 3, run.text
    assert len(posts) == 1
    assert f"redirect (307) to {target}" in run.stderr.decode()
    assert run.stderr.decode().count("error: ") == 1
    assert_clean(run, LONGEST_LINE)


def test_a_redirected_port_forward_upgrade_is_the_pods_error(tmp_path: Path) -> None:
    with hostile_api() as elsewhere:
        with hostile_api(portforward=redirect(302, elsewhere.url)) as api:
            run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
        assert elsewhere.seen == []
    assert run.code == 3, run.text
    assert f"redirect (302) to {elsewhere.url}" in run.stderr.decode()
    assert_clean(run, LONGEST_LINE)
