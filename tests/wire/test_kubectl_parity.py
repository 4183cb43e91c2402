"""The plugin against the real kubectl, shape by shape, on one recording API server.

For every shape in `shapes.SHAPES`: when kubectl succeeds, the plugin succeeds and every request
it sends carries exactly the credentials kubectl sent (scheme, Authorization, Impersonate-*
headers, client certificate, SNI) on kubectl's route, and its exec plugin received what
kubectl's received. When kubectl fails, the plugin fails too, with one `error:` line, exit 2 or
3, and no request sent. In every case no secret of the shape appears in the plugin's output,
also with `-v 9`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wire import differential
from tests.wire.differential import Run, Shape
from tests.wire.pki import Pki
from tests.wire.recorder import RecordingApiServer, Seen
from tests.wire.shapes import SHAPES, ex, kc

pytestmark = pytest.mark.wire


def _normal(seen: Seen) -> tuple[object, ...]:
    # Go writes headers sorted by name; the order of values within one name is kept.
    ordered = tuple(sorted(seen.impersonation, key=lambda pair: pair[0]))
    return (seen.scheme, seen.authorization, ordered, seen.client_subject, seen.sni)


def _route(seen: Seen) -> tuple[str, str, str]:
    return (seen.scheme, seen.method, seen.path)


def _show(run: Run) -> str:
    return (f"exit {run.code}\nstderr: {run.stderr[-1500:]}\nseen: {run.seen}\n"
            f"exec: {run.exec_calls}")


def _no_secret(run: Run, found: list[str], what: str) -> None:
    text = run.stdout + run.stderr
    leaked = [s for s in found if s in text]
    assert not leaked, f"{what} printed a secret of the shape:\n{text[-3000:]}"


def test_shape_table_is_large_and_unique() -> None:
    ids = [shape.id for shape in SHAPES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.id for shape in SHAPES])
def test_plugin_sends_what_kubectl_sends(shape: Shape, api_server: RecordingApiServer,
                                         pki: Pki, tmp_path: Path) -> None:
    differential.ensure_kubectl()
    folder = tmp_path / "shape"
    flags, env, values = differential.prepare(shape, api_server, pki, folder)
    kubectl = differential.run_kubectl(flags, env, folder, api_server, tty=shape.tty)
    plugin = differential.run_plugin(flags, env, folder, api_server, tty=shape.tty)
    secrets = differential.secrets(shape, values, pki)
    context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"
    if shape.differs:
        assert kubectl.code == 0 and kubectl.seen, "no longer a difference" + context
        assert plugin.code == 2 and not plugin.seen, context
        lines = plugin.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context
    elif kubectl.code == 0:
        assert kubectl.seen, "kubectl succeeded without a request" + context
        assert plugin.code == 0, "kubectl succeeded, the plugin did not" + context
        assert plugin.seen, context
        assert _route(plugin.seen[0]) == _route(kubectl.seen[0]), context
        wanted = _normal(kubectl.seen[0])
        assert all(_normal(seen) == wanted for seen in plugin.seen), context
        # The exec plugin ran with what kubectl gave it (once per distinct call).
        assert _unique(plugin.exec_calls) == _unique(kubectl.exec_calls), context
    else:
        assert plugin.code in (2, 3), "kubectl failed, the plugin did not fail so" + context
        assert not plugin.seen, "kubectl failed, the plugin sent requests" + context
        lines = plugin.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context
    _no_secret(plugin, secrets, "the plugin")
    if secrets:
        verbose = differential.run_plugin(flags, env, folder, api_server, ("-v", "9"),
                                          tty=shape.tty)
        assert verbose.code == plugin.code, _show(verbose)
        _no_secret(verbose, secrets, "the plugin with -v 9")


def _unique(calls: list[dict[str, object]]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for call in calls:
        if call not in found:
            found.append(call)
    return found


def test_after_a_401_the_plugin_runs_the_exec_plugin_again_and_retries_once(
        api_server: RecordingApiServer, pki: Pki, tmp_path: Path) -> None:
    """The deliberate difference of docs/credentials.md: client-go refreshes an exec credential
    after a 401 but fails that request; the plugin retries it once with the new token. kubectl
    is run too, so the row fails the day kubectl starts retrying."""
    differential.ensure_kubectl()
    shape = Shape("exec-401-rotates", kc(user={"exec": ex("rotate=refused-first,secret-next")}))
    folder = tmp_path / "shape"
    flags, env, _ = differential.prepare(shape, api_server, pki, folder)
    kubectl = differential.run_kubectl(flags, env, folder, api_server)
    plugin = differential.run_plugin(flags, env, folder, api_server)
    context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"
    assert kubectl.code != 0, "kubectl retried after the 401 now" + context
    assert [s.authorization for s in kubectl.seen] == ["Bearer refused-first"], context
    assert plugin.code == 0, context
    sent = [s.authorization for s in plugin.seen]
    assert sent[:2] == ["Bearer refused-first", "Bearer secret-next"], context
    assert set(sent[2:]) <= {"Bearer secret-next"}, context
    assert len(plugin.exec_calls) == 2, context
