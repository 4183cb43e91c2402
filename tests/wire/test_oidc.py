"""OIDC auth-provider credentials: the plugin against the real kubectl, one issuer of the test's
own and the recording API server, all on loopback.

For each scenario both run on identical copies of one folder (kubeconfig with comments, a second
user, the issuer's CA): the API server must see the same Authorization from both, the issuer the
same requests (discovery, then the refresh: grant type, refresh token, where the client id and
secret go, scopes), and the kubeconfig the plugin wrote must hold the same data as the one
kubectl wrote, be read back by kubectl and work with the refreshed token. Where kubectl fails,
the plugin fails with one `error:` line and exit 3, writes nothing, and prints no token or
client secret, also with `-v 9`. kubectl's behaviour is never typed here: it is run.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.wire import differential
from tests.wire.pki import Pki
from tests.wire.recorder import RecordingApiServer, Seen, free_port

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
ROUTE = differential.ROUTE
RUN_TIMEOUT = 60.0
CLIENT_SECRET = "s3cr:et/+= shh"  # characters Go's QueryEscape changes in the Basic header
REFRESH_TOKEN = "refresh-token-one-4f1c"
ROTATED = "refresh-token-two-9a7e"


def jwt(claims: dict[str, Any]) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(b'{"alg":"RS256"}')
    return f"{header}.{part(json.dumps(claims).encode())}.c2lnbmF0dXJl"


# -- the issuer -------------------------------------------------------------------------------

@dataclass(frozen=True)
class IssuerSaw:
    method: str
    path: str
    authorization: str | None
    content_type: str | None
    form: tuple[tuple[str, str], ...]


@dataclass
class IssuerPlan:
    """What the issuer answers: the discovery document's status and body, the token answer's."""

    discovery_status: int = 200
    discovery_body: bytes | None = None  # None: a document naming this issuer's /token
    token_status: int = 200
    token_type: str = "application/json"
    token_body: bytes = b"{}"
    basic_refused: bool = False  # a client that must send its secret as form fields
    token_delay: float = 0.0  # seconds before the token answer


class Issuer:
    """An OpenID provider on loopback over TLS (the test CA), recording every request."""

    def __init__(self, pki: Pki) -> None:
        self.plan = IssuerPlan()
        self._lock = threading.Lock()
        self._seen: list[IssuerSaw] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the records are the output."""

            def _answer(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self, body: bytes) -> None:
                form = tuple(sorted(urllib.parse.parse_qsl(body.decode(),
                                                           keep_blank_values=True)))
                owner.add(IssuerSaw(self.command, self.path,
                                    self.headers.get("Authorization"),
                                    self.headers.get("Content-Type"), form))

            def do_GET(self) -> None:
                self._record(b"")
                plan = owner.plan
                body = plan.discovery_body
                if body is None:
                    body = json.dumps({"issuer": owner.url,
                                       "token_endpoint": f"{owner.url}/token"}).encode()
                self._answer(plan.discovery_status, "application/json", body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._record(self.rfile.read(length) if length else b"")
                plan = owner.plan
                time.sleep(plan.token_delay)
                if plan.basic_refused and self.headers.get("Authorization"):
                    self._answer(401, "application/json", b'{"error": "invalid_client"}')
                    return
                self._answer(plan.token_status, plan.token_type, plan.token_body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server.cert, pki.server.key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, seen: IssuerSaw) -> None:
        with self._lock:
            self._seen.append(seen)

    def take(self) -> list[IssuerSaw]:
        with self._lock:
            found, self._seen = self._seen, []
        return found

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def issuer(pki: Pki) -> Iterator[Issuer]:
    running = Issuer(pki)
    yield running
    running.stop()


# -- scenarios --------------------------------------------------------------------------------

def token_answer(id_token: str | None, refresh: str | None = None,
                 **more: Any) -> bytes:
    body: dict[str, Any] = {"access_token": "access-token-value", "token_type": "Bearer",
                            "expires_in": 3600, **more}
    if id_token is not None:
        body["id_token"] = id_token
    if refresh is not None:
        body["refresh_token"] = refresh
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Scenario:
    id: str
    id_token: str | None  # "valid", "expired", "garbage" or None (absent)
    refresh_token: str | None = REFRESH_TOKEN
    plan: IssuerPlan = field(default_factory=IssuerPlan)
    client_secret: str | None = CLIENT_SECRET
    ca: str = "data"  # "data", "file" (a path relative to the folder) or "wrong"
    issuer_url: str | None = None  # None: the test's issuer
    split: bool = False  # the user in a second file of a KUBECONFIG list

    def secrets(self, new_id_token: str) -> list[str]:
        found = [REFRESH_TOKEN, ROTATED, CLIENT_SECRET, "static-token-value", new_id_token]
        return found + [self.token_value(kind) for kind in ("valid", "expired")]

    @staticmethod
    def token_value(kind: str | None) -> str:
        return TOKENS.get(kind or "", "")


NOW = int(time.time())
NEW_ID_TOKEN = jwt({"iss": "wire", "sub": "alice", "exp": NOW + 7200, "n": "new"})
TOKENS = {
    "valid": jwt({"iss": "wire", "sub": "alice", "exp": NOW + 3600}),
    "expired": jwt({"iss": "wire", "sub": "alice", "exp": NOW - 60}),
    "garbage": "not-a-jwt",
}


def _plan(**kwargs: Any) -> IssuerPlan:
    return IssuerPlan(**kwargs)


SCENARIOS = [
    Scenario("valid-id-token", "valid"),
    Scenario("valid-id-token-no-refresh-token", "valid", refresh_token=None),
    Scenario("expired-refresh-rotated", "expired",
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("expired-refresh-not-rotated", "expired",
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, REFRESH_TOKEN))),
    Scenario("expired-refresh-none-returned", "expired",
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN))),
    Scenario("issuer-wants-secret-in-form", "expired",
             plan=_plan(basic_refused=True, token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("token-answer-form-encoded", "expired", plan=_plan(
        token_type="application/x-www-form-urlencoded",
        token_body=urllib.parse.urlencode({"access_token": "a", "id_token": NEW_ID_TOKEN,
                                           "refresh_token": ROTATED}).encode())),
    Scenario("issuer-url-with-trailing-slash", "expired", issuer_url="{issuer}/",
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("absent-id-token-refresh", None,
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("no-client-secret", "expired", client_secret=None,
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("ca-from-file", "expired", ca="file",
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("user-in-second-kubeconfig", "expired", split=True,
             plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED))),
    Scenario("expired-no-refresh-token", "expired", refresh_token=None),
    Scenario("garbage-id-token", "garbage"),
    Scenario("issuer-unreachable", "expired", issuer_url="https://127.0.0.1:{free_port}"),
    Scenario("issuer-wrong-ca", "expired", ca="wrong"),
    Scenario("discovery-404", "expired", plan=_plan(discovery_status=404)),
    Scenario("discovery-not-json", "expired", plan=_plan(discovery_body=b"<html>")),
    Scenario("discovery-without-token-endpoint", "expired",
             plan=_plan(discovery_body=b'{"issuer": "x"}')),
    Scenario("token-http-400", "expired",
             plan=_plan(token_status=400, token_body=json.dumps(
                 {"error": "invalid_grant",
                  "error_description": f"refresh token {REFRESH_TOKEN} is gone"}).encode())),
    Scenario("token-http-500", "expired", plan=_plan(token_status=500, token_body=b"oops")),
    Scenario("token-not-json", "expired", plan=_plan(token_body=b"{not json")),
    Scenario("token-without-id-token", "expired",
             plan=_plan(token_body=token_answer(None, ROTATED))),
    Scenario("token-without-access-token", "expired",
             plan=_plan(token_body=json.dumps({"id_token": NEW_ID_TOKEN}).encode())),
]

USER_HEAD = """\
- name: oidc-user   # the user under test
  user:
    auth-provider:
      name: oidc
      config:
        idp-issuer-url: {issuer}
        client-id: wire-client
"""

MAIN_HEAD = """\
# A kubeconfig as a person keeps it: comments, an order of their own, other entries.
apiVersion: v1
kind: Config
preferences: {{}}
current-context: oidc   # the context under test
clusters:
- name: wire
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {api_ca}
contexts:
- name: oidc
  context: {{cluster: wire, user: oidc-user, namespace: x}}
- name: other
  context:
    cluster: wire
    user: static
users:
- name: static
  user:
    token: static-token-value   # another user: never changed
"""


def _user_text(scenario: Scenario, issuer_url: str, pki: Pki) -> str:
    lines = [USER_HEAD.format(issuer=issuer_url)]
    if scenario.client_secret is not None:
        lines.append(f"        client-secret: {json.dumps(scenario.client_secret)}\n")
    if scenario.ca == "data":
        lines.append(f"        idp-certificate-authority-data: {pki.ca.cert_b64()}\n")
    elif scenario.ca == "wrong":
        lines.append(f"        idp-certificate-authority-data: {pki.other_ca.cert_b64()}\n")
    else:
        lines.append("        idp-certificate-authority: issuer-ca.crt   # relative: the cwd\n")
    lines.append("        extra-scopes: groups,email\n")
    if scenario.id_token is not None:
        lines.append(f"        id-token: {Scenario.token_value(scenario.id_token)}\n")
    if scenario.refresh_token is not None:
        lines.append(f"        refresh-token: {scenario.refresh_token}   # from the login\n")
    return "".join(lines)


def _write_folder(folder: Path, scenario: Scenario, issuer: Issuer, api: RecordingApiServer,
                  pki: Pki, issuer_url: str) -> tuple[list[str], dict[str, str]]:
    folder.mkdir(parents=True)
    (folder / "home").mkdir()
    shutil.copy(pki.ca.cert, folder / "issuer-ca.crt")
    main = MAIN_HEAD.format(port=api.tls_port, api_ca=pki.ca.cert_b64())
    user = _user_text(scenario, issuer_url, pki)
    env = {"HOME": str(folder / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8"}
    if scenario.split:
        (folder / "config").write_text(main)
        (folder / "users").write_text("# the second file of the list\nusers:\n" + user)
        env["KUBECONFIG"] = os.pathsep.join([str(folder / "config"), str(folder / "users")])
        flags: list[str] = []
    else:
        (folder / "config").write_text(main + user)
        flags = ["--kubeconfig", str(folder / "config")]
    for name in ("config", "users"):
        if (folder / name).exists():
            (folder / name).chmod(0o640)
    return flags, env


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seen: list[Seen]
    issuer: list[IssuerSaw]
    files: dict[str, bytes]


def _run(command: list[str], env: dict[str, str], folder: Path, api: RecordingApiServer,
         issuer: Issuer | None) -> Outcome:
    api.take()
    if issuer is not None:
        issuer.take()
    done = subprocess.run(command, env=env, cwd=folder, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=RUN_TIMEOUT, check=False)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    return Outcome(done.returncode, done.stdout.decode(errors="replace"),
                   done.stderr.decode(errors="replace"), api.take(),
                   issuer.take() if issuer is not None else [], files)


def run_kubectl(flags: list[str], env: dict[str, str], folder: Path, api: RecordingApiServer,
                issuer: Issuer | None) -> Outcome:
    return _run([str(KUBECTL), *flags, "get", "--raw", ROUTE], env, folder, api, issuer)


def run_plugin(flags: list[str], env: dict[str, str], folder: Path, api: RecordingApiServer,
               issuer: Issuer | None, verbose: bool = False) -> Outcome:
    extra = ["-v", "9"] if verbose else []
    plugin_env = {**env, "PYTHONPATH": str(REPO)}
    return _run([sys.executable, "-m", "kubectl_keepalive", *flags, *extra, "-n", "x",
                 "status", "-o", "json"], plugin_env, folder, api, issuer)


def _show(outcome: Outcome) -> str:
    return (f"exit {outcome.code}\nstderr: {outcome.stderr[-1500:]}\n"
            f"seen: {[s.authorization for s in outcome.seen][:3]}\nissuer: {outcome.issuer}")


def _kubectl_view(folder: Path) -> dict[str, Any]:
    """Each kubeconfig file of the folder as kubectl reads it (`config view --raw`)."""
    found = {}
    for name in ("config", "users"):
        if (folder / name).exists():
            done = subprocess.run(
                [str(KUBECTL), "config", "view", "--raw", "-o", "json", "--kubeconfig",
                 str(folder / name)], capture_output=True, timeout=RUN_TIMEOUT, check=True,
                env={"HOME": str(folder / "home")})
            found[name] = json.loads(done.stdout)
    return found


def _oidc_user(files: dict[str, bytes]) -> list[Any]:
    """The user's entry as written, raw YAML data, from whichever file holds it."""
    found = []
    for name in ("config", "users"):
        data = yaml.safe_load(files[name]) if name in files else None
        found += [u for u in (data or {}).get("users") or () if u.get("name") == "oidc-user"]
    return found


def _changed_lines(before: bytes, after: bytes) -> list[str]:
    """The lines removed or added between two texts."""
    diff = difflib.ndiff(before.decode().splitlines(), after.decode().splitlines())
    return [line[2:] for line in diff if line.startswith(("- ", "+ "))]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_plugin_does_what_kubectl_does(scenario: Scenario, issuer: Issuer,
                                       api_server: RecordingApiServer, pki: Pki,
                                       tmp_path: Path) -> None:
    differential.ensure_kubectl()
    issuer.plan = scenario.plan
    url = (scenario.issuer_url or issuer.url).format(free_port=free_port(), issuer=issuer.url)
    folders = {name: tmp_path / name for name in ("kubectl", "plugin", "verbose")}
    setups = {name: _write_folder(folder, scenario, issuer, api_server, pki, url)
              for name, folder in folders.items()}
    before = {p.name: p.read_bytes() for p in folders["plugin"].iterdir() if p.is_file()}

    kubectl = run_kubectl(*setups["kubectl"], folders["kubectl"], api_server, issuer)
    plugin = run_plugin(*setups["plugin"], folders["plugin"], api_server, issuer)
    context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"

    # The issuer saw the same requests from both: discovery, then each refresh attempt with
    # its grant type, refresh token, client id and secret where kubectl put them, no scope.
    assert plugin.issuer == kubectl.issuer, context
    if kubectl.code == 0:
        assert plugin.code == 0, "kubectl succeeded, the plugin did not" + context
        wanted = kubectl.seen[0].authorization
        assert wanted and plugin.seen, context
        assert all(seen.authorization == wanted for seen in plugin.seen), context
        # The same written (or nothing, when the id-token was valid): the user's entry as
        # YAML data, and every file as kubectl reads it (kubectl rewrites the whole file in
        # its own order, without comments or empty preferences) ...
        assert _oidc_user(plugin.files) == _oidc_user(kubectl.files), context
        assert _kubectl_view(folders["plugin"]) == _kubectl_view(folders["kubectl"]), context
        # ... with the user's text kept: only token lines changed, comments and all else kept.
        for name in ("config", "users"):
            if name in before:
                for line in _changed_lines(before[name], plugin.files[name]):
                    assert line.strip().startswith(("id-token:", "refresh-token:")), line
                assert (folders["plugin"] / name).stat().st_mode & 0o777 == 0o640
        assert not [n for n in plugin.files if n.endswith((".lock", ".tmp"))], context
        _kubectl_reads_back(setups["plugin"], folders["plugin"], api_server, issuer, plugin)
    else:
        assert plugin.code == 3, "kubectl failed, the plugin did not fail with 3" + context
        assert not plugin.seen, "kubectl failed, the plugin sent requests" + context
        lines = plugin.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context
        assert plugin.files == before, "the plugin wrote to a file" + context
    _no_secret(plugin, scenario.secrets(NEW_ID_TOKEN))

    verbose = run_plugin(*setups["verbose"], folders["verbose"], api_server, issuer, True)
    assert verbose.code == plugin.code, _show(verbose)
    _no_secret(verbose, scenario.secrets(NEW_ID_TOKEN))


def _kubectl_reads_back(setup: tuple[list[str], dict[str, str]], folder: Path,
                        api: RecordingApiServer, issuer: Issuer, plugin: Outcome) -> None:
    """kubectl, on the files the plugin wrote, sends the plugin's token without refreshing."""
    again = run_kubectl(*setup, folder, api, issuer)
    assert again.code == 0, _show(again)
    assert again.issuer == [], "kubectl had to refresh after the plugin's write"
    assert again.seen and again.seen[0].authorization == plugin.seen[0].authorization


def _no_secret(outcome: Outcome, secrets: list[str]) -> None:
    text = outcome.stdout + outcome.stderr
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"a token or secret was printed:\n{text[-3000:]}"


# -- the expiry rule against kubectl ----------------------------------------------------------

def _payload_token(payload: bytes) -> str:
    return (base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode() + "."
            + base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + ".c2ln")


def _payloads() -> list[tuple[str, str]]:
    now = int(time.time())
    later = now + 3600
    claims = [
        f'{{"exp": {later}}}', f'{{"exp": {now + 30}}}', f'{{"exp": {now + 2}}}',
        f'{{"exp": {now - 5}}}', "{}", "null", "[]", '{"exp": null}', f'{{"exp": "{later}"}}',
        f'{{"exp": {later}.7}}', f'{{"exp": {later}e0}}', f'{{"EXP": {later}}}',
        f'{{"exp": {later}, "exp": 5}}', f'{{"exp": 5, "exp": {later}}}',
        f'{{"Exp": {later}, "exp": 3}}', f'{{"exp": true, "exp": {later}}}', '{"exp": 1e300}',
        '{"exp": 9223372036854775807}', '{"exp": 9223372036854775808}', '{"exp": 1e400}',
        '{"exp": 9223371974719179007}',
        '{"exp": 9223371974719179008}', '{"exp": -9223372036854775808}',
        '{"exp": "abc"}', f'{{"exp": {later}}} x', '{"exp": NaN}', '{"exp": ""}',
        f'{{"exp": "{later}.5"}}', '{"exp": {"a": 1}}', f'{{"exp": [{later}]}}', "",
    ]
    found = [(c, _payload_token(c.encode())) for c in claims]
    good = base64.urlsafe_b64encode(f'{{"exp": {later}}}'.encode()).decode()
    found += [("padded base64", f"a.{good}.s"), ("two parts", f"a.{good.rstrip('=')}"),
              ("four parts", f"a.{good.rstrip('=')}.s.t"),
              ("standard alphabet", "a." + base64.b64encode(
                  b'{"exp": %d, "x": "\xfb\xff"}' % later).decode().rstrip("=") + ".s")]
    return found


def test_expiry_rule_is_kubectls(api_server: RecordingApiServer, pki: Pki,
                                 tmp_path: Path) -> None:
    """For each id-token (no refresh-token), kubectl sends it, or fails: the plugin the same."""
    differential.ensure_kubectl()
    differences = []
    for number, (name, token) in enumerate(_payloads()):
        folder = tmp_path / str(number)
        folder.mkdir()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": {
                "server": f"https://127.0.0.1:{api_server.tls_port}",
                "certificate-authority-data": pki.ca.cert_b64()}}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            "users": [{"name": "u", "user": {"auth-provider": {"name": "oidc", "config": {
                "id-token": token, "idp-issuer-url": "https://127.0.0.1:1",
                "client-id": "x"}}}}]}
        (folder / "config").write_text(yaml.safe_dump(config))
        env = {"HOME": str(folder), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        flags = ["--kubeconfig", str(folder / "config")]
        # No issuer is asked: there is no refresh-token.
        kubectl = run_kubectl(flags, env, folder, api_server, None)
        plugin = run_plugin(flags, env, folder, api_server, None)
        sent = {"kubectl": [s.authorization for s in kubectl.seen][:1],
                "plugin": [s.authorization for s in plugin.seen][:1]}
        if (kubectl.code == 0) != (plugin.code == 0) or sent["kubectl"] != sent["plugin"]:
            differences.append(f"{name}: kubectl {kubectl.code} {kubectl.stderr.strip()!r}, "
                               f"plugin {plugin.code} {plugin.stderr.strip()!r}")
        if plugin.code != 0:
            assert plugin.code == 3 and token not in plugin.stderr, plugin.stderr
    assert not differences, "\n".join(differences)


# -- providers kubectl removed or never had --------------------------------------------------

@pytest.mark.parametrize("user", [
    {"auth-provider": {"name": "gcp"}},
    {"auth-provider": {"name": "azure", "config": {"access-token": "azure-secret-token"}}},
    {"auth-provider": {"name": "keycloak"}},
    {"token": "static-token-value", "auth-provider": {"name": "gcp"}},
    {"token": "static-token-value", "auth-provider": {"name": "oidc",
                                                      "config": {"client-id": "x"}}},
    {"token": "static-token-value", "auth-provider": {"name": "oidc", "config": {
        "client-id": "x", "idp-issuer-url": "https://127.0.0.1:1"}}},
    {"username": "u", "password": "static-password", "auth-provider": {
        "name": "oidc", "config": {"client-id": "x", "idp-issuer-url": "https://127.0.0.1:1"}}},
], ids=["gcp", "azure", "unknown", "token-and-gcp", "token-and-oidc-without-issuer",
        "token-and-oidc", "password-and-oidc"])
def test_other_providers_as_kubectl(user: dict[str, Any], api_server: RecordingApiServer,
                                    pki: Pki, tmp_path: Path) -> None:
    differential.ensure_kubectl()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": f"https://127.0.0.1:{api_server.tls_port}",
            "certificate-authority-data": pki.ca.cert_b64()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": user}]}
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    flags = ["--kubeconfig", str(tmp_path / "config")]
    kubectl = run_kubectl(flags, env, tmp_path, api_server, None)
    plugin = run_plugin(flags, env, tmp_path, api_server, None)
    context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"
    if kubectl.code == 0:
        assert plugin.code == 0, context
        assert [s.authorization for s in plugin.seen][:1] == \
            [s.authorization for s in kubectl.seen][:1], context
    else:
        assert plugin.code in (2, 3) and not plugin.seen, context
        lines = plugin.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context
        name = user["auth-provider"]["name"]
        if name in ("gcp", "azure"):
            assert "removed in 1.26" in lines[0], lines[0]
            assert ("gke-gcloud-auth-plugin" if name == "gcp" else "kubelogin") in lines[0]
        elif name != "oidc":
            assert f'"{name}"' in lines[0], lines[0]
    _no_secret(plugin, ["static-token-value", "static-password", "azure-secret-token"])


# -- a lock another writer holds --------------------------------------------------------------

def test_a_held_lock_stops_the_refresh(issuer: Issuer, api_server: RecordingApiServer,
                                       pki: Pki, tmp_path: Path) -> None:
    """With `<file>.lock` present, kubectl fails to store its refreshed tokens; the plugin
    fails too, but before the refresh (the refresh token is not spent), after waiting for the
    writer, and leaves the file and the other writer's lock alone."""
    differential.ensure_kubectl()
    scenario = Scenario("locked", "expired",
                        plan=_plan(token_body=token_answer(NEW_ID_TOKEN, ROTATED)))
    issuer.plan = scenario.plan
    setups = {}
    for name in ("kubectl", "plugin"):
        setups[name] = _write_folder(tmp_path / name, scenario, issuer, api_server, pki,
                                     issuer.url)
        (tmp_path / name / "config.lock").write_text("")
    before = (tmp_path / "plugin" / "config").read_bytes()
    kubectl = run_kubectl(*setups["kubectl"], tmp_path / "kubectl", api_server, issuer)
    plugin = run_plugin(*setups["plugin"], tmp_path / "plugin", api_server, issuer)
    context = f"\nkubectl: {_show(kubectl)}\nplugin: {_show(plugin)}"
    assert kubectl.code != 0 and not kubectl.seen, context
    assert plugin.code == 3 and not plugin.seen and plugin.issuer == [], context
    assert "config.lock" in plugin.stderr, context
    assert (tmp_path / "plugin" / "config").read_bytes() == before
    assert (tmp_path / "plugin" / "config.lock").exists()
    _no_secret(plugin, scenario.secrets(NEW_ID_TOKEN))


# -- two runs at once ---------------------------------------------------------------------------

def test_two_runs_at_once_spend_the_refresh_token_once(issuer: Issuer,
                                                       api_server: RecordingApiServer,
                                                       pki: Pki, tmp_path: Path) -> None:
    """Two plugin runs on one expired kubeconfig: the first refreshes under the lock, the
    second waits for it, reads the stored tokens and uses them, so an issuer that rotates
    refresh tokens sees one refresh, not a second one with a token it has already spent."""
    scenario = Scenario("together", "expired", plan=_plan(
        token_delay=1.0, token_body=token_answer(NEW_ID_TOKEN, ROTATED)))
    issuer.plan = scenario.plan
    folder = tmp_path / "shared"
    flags, env = _write_folder(folder, scenario, issuer, api_server, pki, issuer.url)
    api_server.take()
    issuer.take()
    command = [sys.executable, "-m", "kubectl_keepalive", *flags, "-n", "x", "status",
               "-o", "json"]
    runs = [subprocess.Popen(command, env={**env, "PYTHONPATH": str(REPO)}, cwd=folder,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(2)]
    try:
        outputs = [run.communicate(timeout=RUN_TIMEOUT) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert [run.returncode for run in runs] == [0, 0], outputs
    posts = [seen for seen in issuer.take() if seen.method == "POST"]
    assert len(posts) == 1, posts
    assert {seen.authorization for seen in api_server.take()} == {f"Bearer {NEW_ID_TOKEN}"}
    stored = yaml.safe_load((folder / "config").read_text())["users"][1]["user"]
    assert stored["auth-provider"]["config"]["refresh-token"] == ROTATED
