"""The real kubectl and the plugin in a pod, and on a rotated token file, live.

In a pod: each command runs in a private mount namespace (`unshare --mount --propagation
private`, root) where a tmpfs makes client-go's fixed service-account folder hold a token, the
test CA's ca.crt and a namespace; KUBERNETES_SERVICE_HOST/PORT name the recording server, HOME
is empty and there is no kubeconfig. Nothing is mounted in the machine's own namespace. kubectl
runs `get pods` (the recorder serves the discovery it needs), the plugin `status`: where kubectl
reaches the recorder, the plugin sends the same credentials and SNI to the same namespace;
where kubectl fails, the plugin fails; where a case is a deliberate difference
(docs/credentials.md), kubectl must still not reach the recorder and the plugin must use the
service account.

Token-file rotation: the recorder refuses token A once the test has rotated the file to B.
kubectl is the oracle for what the file says: its next run sends B, and the plugin's retry must
send that same token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.wire import differential
from tests.wire.differential import Run, Shape
from tests.wire.pki import Pki
from tests.wire.recorder import DISCOVERY, RecordingApiServer, Seen
from tests.wire.shapes import kc

pytestmark = pytest.mark.wire

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # client-go's, fixed
SA_TOKEN = "secret-service-account-token"
SA_NAMESPACE = "pod-namespace"
TOKEN_A, TOKEN_B = "secret-rotated-token-A", "secret-rotated-token-B"
# Inside the private namespace: a tmpfs on the deepest folder of the service-account path that
# exists, the rest of the path made in it, the test's folder bound there (so the test can
# rotate the token, as the kubelet does), then the command itself.
IN_NAMESPACE = r"""set -eu
mount -t tmpfs -o size=1m,mode=0755 wire-serviceaccount "$1"
mkdir -p "$2"
mount --bind "$3" "$2"
shift 3
exec "$@"
"""
TIMEOUT_SKIPS = ("kubectl leaves the in-cluster config for localhost:8080 when a connection "
                 "flag sets anything but the token, CA or namespace; the plugin keeps the "
                 "service account (a flag that bounds time or names whom to impersonate "
                 "should not change who you are)")


@dataclass(frozen=True)
class PodCase:
    """Flags and environment for both tools in the pod. `differs`: the deliberate difference
    (kubectl skips the in-cluster config, the plugin keeps the service account)."""

    id: str
    flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    differs: str = ""
    wrong_ca: bool = False  # the pod's ca.crt is an unrelated CA
    no_token: bool = False  # the service-account folder has no token file


POD_CASES = [
    PodCase("service-account"),
    PodCase("namespace-flag", ("-n", "other")),
    PodCase("token-flag", ("--token", "secret-flag-token")),
    PodCase("token-and-namespace-flags", ("--token", "secret-flag-token", "-n", "other")),
    PodCase("pod-namespace-env", env={"POD_NAMESPACE": "env-namespace"}),
    PodCase("pod-namespace-env-and-flag", ("-n", "other"),
            env={"POD_NAMESPACE": "env-namespace"}),
    PodCase("ca-flag", ("--certificate-authority", "{ca}")),
    PodCase("ca-flag-wrong", ("--certificate-authority", "{other_ca}")),
    PodCase("insecure-flag-wrong-pod-ca", ("--insecure-skip-tls-verify",), wrong_ca=True),
    PodCase("ca-flag-over-wrong-pod-ca", ("--certificate-authority", "{ca}"), wrong_ca=True),
    PodCase("tls-server-name-flag", ("--tls-server-name", "kube.wire.test")),
    PodCase("client-certificate-flags", ("--client-certificate", "{alice_crt}",
                                         "--client-key", "{alice_key}")),
    PodCase("request-timeout-zero", ("--request-timeout", "0")),
    PodCase("user-flag", ("--user", "u")),
    PodCase("cluster-flag", ("--cluster", "k")),
    PodCase("context-flag", ("--context", "c")),
    PodCase("service-host-by-name", env={"KUBERNETES_SERVICE_HOST": "localhost"}),
    PodCase("service-port-unset", env={"KUBERNETES_SERVICE_PORT": ""}),
    PodCase("request-timeout", ("--request-timeout", "5s"), differs=TIMEOUT_SKIPS),
    PodCase("as-flag", ("--as", "jane"), differs=TIMEOUT_SKIPS),
    PodCase("as-group-flag-without-as", ("--as-group", "devs")),
    PodCase("token-file-missing", no_token=True),
]


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[RecordingApiServer]:
    """A recorder of this module's own, serving the discovery `kubectl get pods` reads."""
    recorder = RecordingApiServer(pki, DISCOVERY).start()
    yield recorder
    recorder.stop()


def _mount_point() -> Path:
    """The deepest existing folder of the service-account path, links resolved (on Debian
    /var/run is /run): the tmpfs goes there, in the private namespace only."""
    path = Path(os.path.realpath(SERVICE_ACCOUNT_DIR))
    while not path.is_dir():
        path = path.parent
    if path == Path("/"):
        raise RuntimeError(f"no folder of {SERVICE_ACCOUNT_DIR} but / exists: will not hide /")
    return path


@pytest.fixture(scope="module")
def in_pod() -> Path:
    """Root and unshare(1), checked once by making a mount namespace (a skip, which fails
    under CI=true). The mount point it returns is used only inside such namespaces."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("the in-pod cases need root and unshare (util-linux)")
    probe = subprocess.run([unshare, "--mount", "--propagation", "private", "--", "true"],
                           capture_output=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace: {probe.stderr.decode(errors='replace')}")
    return _mount_point()


def _service_account(folder: Path, pki: Pki, wrong_ca: bool = False,
                     no_token: bool = False) -> Path:
    source = folder / "serviceaccount"
    source.mkdir()
    if not no_token:
        (source / "token").write_text(SA_TOKEN + "\n")
    (source / "namespace").write_text(SA_NAMESPACE + "\n")
    shutil.copyfile((pki.other_ca if wrong_ca else pki.ca).cert, source / "ca.crt")
    return source


def _wrapped(command: list[str], mount_point: Path, source: Path) -> list[str]:
    if source.resolve().is_relative_to(mount_point):
        raise RuntimeError(f"{source} would be hidden by the tmpfs on {mount_point}")
    return [str(shutil.which("unshare")), "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", IN_NAMESPACE, "sh", str(mount_point), SERVICE_ACCOUNT_DIR,
            str(source), *command]


def _credentials(seen: Seen) -> tuple[object, ...]:
    ordered = tuple(sorted(seen.impersonation, key=lambda pair: pair[0]))
    return (seen.scheme, seen.authorization, ordered, seen.client_subject, seen.sni)


def _pods_paths(run: Run) -> set[str]:
    return {seen.path for seen in run.seen if seen.path.endswith("/pods")}


def _show(run: Run) -> str:
    return f"exit {run.code}\nstderr: {run.stderr[-1500:]}\nseen: {run.seen}"


@pytest.mark.netns  # root, for the mount namespace
@pytest.mark.parametrize("case", POD_CASES, ids=[case.id for case in POD_CASES])
def test_in_a_pod_the_plugin_does_what_kubectl_does(case: PodCase, server: RecordingApiServer,
                                                    pki: Pki, in_pod: Path,
                                                    tmp_path: Path) -> None:
    differential.ensure_kubectl()
    folder = tmp_path / "pod"
    pod_env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "{tls_port}",
               **case.env}
    flags, env, _ = differential.prepare(Shape(case.id, None, case.flags, pod_env), server,
                                         pki, folder)
    assert "KUBECONFIG" not in env and not any((folder / "home").iterdir())
    source = _service_account(folder, pki, case.wrong_ca, case.no_token)
    kubectl = differential.run_command(
        _wrapped([str(differential.KUBECTL), *flags, "get", "pods", "-o", "json"], in_pod,
                 source), env, folder, server, "kubectl-exec.jsonl")
    plugin = differential.run_command(
        _wrapped([sys.executable, "-m", "kubectl_keepalive", *flags, "status", "-o", "json"],
                 in_pod, source), env, folder, server, "plugin-exec.jsonl")
    context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"
    if case.differs:
        assert kubectl.code != 0 and not kubectl.seen, "no longer a difference" + context
        assert plugin.code == 0, context
        assert plugin.seen and all(s.authorization == f"Bearer {SA_TOKEN}"
                                   for s in plugin.seen), context
    elif kubectl.code == 0:
        assert kubectl.seen, "kubectl succeeded without a request" + context
        assert plugin.code == 0, "kubectl succeeded, the plugin did not" + context
        wanted = {_credentials(seen) for seen in kubectl.seen}
        assert len(wanted) == 1, context
        assert plugin.seen and {_credentials(s) for s in plugin.seen} == wanted, context
        assert _pods_paths(plugin) == _pods_paths(kubectl), "another namespace" + context
    else:
        assert plugin.code in (2, 3), "kubectl failed, the plugin did not fail so" + context
        lines = plugin.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context
        assert not plugin.seen, "kubectl failed, the plugin sent requests" + context
    assert SA_TOKEN not in plugin.stdout + plugin.stderr, context


# -- token-file rotation -------------------------------------------------------------------------

def _revoke_on_arrival(token_file: Path) -> Callable[[Seen], bool]:
    """The server's side of a rotation that races a request: the moment token A arrives, the
    file is rotated to B and A is answered 401 (and stays revoked)."""
    def refuse(seen: Seen) -> bool:
        if seen.authorization != f"Bearer {TOKEN_A}":
            return False
        token_file.write_text(TOKEN_B + "\n")
        return True
    return refuse


def _rotated_under_a_request(server: RecordingApiServer, token_file: Path,
                             kubectl: Callable[[], Run], plugin: Callable[[], Run]) -> None:
    """kubectl sends A, is refused and fails; its next run sends what the file says now. The
    plugin sends A, re-reads the file and retries once with what kubectl's next run sent."""
    token_file.write_text(TOKEN_A + "\n")
    server.refuse = _revoke_on_arrival(token_file)
    try:
        first, following = kubectl(), kubectl()
        token_file.write_text(TOKEN_A + "\n")  # the same story again, for the plugin
        ours = plugin()
    finally:
        server.refuse = None
    context = f"\nkubectl: {_show(first)}\nkubectl next: {_show(following)}\nplugin: {_show(ours)}"
    assert first.code != 0, "kubectl retried after the 401 now" + context
    assert [s.authorization for s in first.seen] == [f"Bearer {TOKEN_A}"], context
    assert following.code == 0 and following.seen, context
    rotated = {s.authorization for s in following.seen}
    assert rotated == {f"Bearer {TOKEN_B}"}, "kubectl's next run sent another token" + context
    assert ours.code == 0, context
    sent = [s.authorization for s in ours.seen]
    assert sent[:2] == [first.seen[0].authorization, *rotated], context
    assert set(sent[2:]) <= rotated, context
    assert TOKEN_A not in ours.stdout + ours.stderr and TOKEN_B not in ours.stdout + ours.stderr


def _token_file_user(server: RecordingApiServer, pki: Pki, folder: Path
                     ) -> tuple[list[str], dict[str, str], Path]:
    shape = Shape("token-file-rotation", kc(user={"tokenFile": "tok"}),
                  files={"tok": TOKEN_A + "\n"})
    flags, env, _ = differential.prepare(shape, server, pki, folder)
    return flags, env, folder / "tok"


def test_a_token_file_rotated_under_a_request(server: RecordingApiServer, pki: Pki,
                                              tmp_path: Path) -> None:
    """The deliberate 401 difference of docs/credentials.md, for a tokenFile, measured."""
    differential.ensure_kubectl()
    folder = tmp_path / "shape"
    flags, env, token_file = _token_file_user(server, pki, folder)
    _rotated_under_a_request(
        server, token_file,
        lambda: differential.run_kubectl(flags, env, folder, server),
        lambda: differential.run_plugin(flags, env, folder, server))


def test_a_token_file_rotated_between_runs(server: RecordingApiServer, pki: Pki,
                                           tmp_path: Path) -> None:
    """Both read the file on each run: before the rotation both send A, after it (A revoked)
    both send B, and the plugin sends exactly what kubectl sends each time."""
    differential.ensure_kubectl()
    folder = tmp_path / "shape"
    flags, env, token_file = _token_file_user(server, pki, folder)
    sent: list[set[str | None]] = []
    try:
        for rotate in (False, True):
            if rotate:
                token_file.write_text(TOKEN_B + "\n")
                server.refuse = lambda seen: seen.authorization == f"Bearer {TOKEN_A}"
            kubectl = differential.run_kubectl(flags, env, folder, server)
            plugin = differential.run_plugin(flags, env, folder, server)
            context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"
            assert kubectl.code == 0 and plugin.code == 0, context
            wanted = {_credentials(seen) for seen in kubectl.seen}
            assert len(wanted) == 1, context
            assert {_credentials(seen) for seen in plugin.seen} == wanted, context
            sent.append({seen.authorization for seen in kubectl.seen})
    finally:
        server.refuse = None
    assert sent == [{f"Bearer {TOKEN_A}"}, {f"Bearer {TOKEN_B}"}], sent


@pytest.mark.netns  # root, for the mount namespace
def test_in_a_pod_a_service_account_token_rotated_under_a_request(
        server: RecordingApiServer, pki: Pki, in_pod: Path, tmp_path: Path) -> None:
    """The kubelet rotates the projected token in place: the same 401 story in a pod."""
    differential.ensure_kubectl()
    folder = tmp_path / "pod"
    pod_env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "{tls_port}"}
    flags, env, _ = differential.prepare(Shape("pod-rotation", None, (), pod_env), server, pki,
                                         folder)
    source = _service_account(folder, pki)
    kubectl = _wrapped([str(differential.KUBECTL), *flags, "get", "--raw", differential.ROUTE],
                       in_pod, source)
    plugin = _wrapped([sys.executable, "-m", "kubectl_keepalive", *flags, "status", "-o",
                       "json"], in_pod, source)
    _rotated_under_a_request(
        server, source / "token",
        lambda: differential.run_command(kubectl, env, folder, server, "kubectl-exec.jsonl"),
        lambda: differential.run_command(plugin, env, folder, server, "plugin-exec.jsonl"))
