"""Credentials as client-go gets them: exec plugins run for real (small shell scripts)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from kubectl_keepalive.errors import ClusterError, UsageError
from kubectl_keepalive.kube.client.credentials import Credentials

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


def plugin(folder: Path, body: str, name: str = "cred.py") -> Path:
    """An executable Python plugin that records its input next to itself."""
    path = folder / name
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"open({str(folder / 'calls')!r}, 'a').write(json.dumps("
                    "{'argv': sys.argv[1:], 'info': json.loads(os.environ['KUBERNETES_EXEC_INFO']),"
                    " 'env': os.environ.get('MY_VAR'), 'stdin_tty': False}) + '\\n')\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def answer(version: str = V1, **status: Any) -> str:
    return f"print(json.dumps({{'apiVersion': {version!r}, 'kind': 'ExecCredential', " \
           f"'status': {status!r}}}))\n"


def calls(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "calls").read_text().splitlines()]


def exec_user(command: str, **extra: Any) -> dict[str, Any]:
    return {"exec": {"command": command, "apiVersion": V1, "interactiveMode": "Never", **extra}}


def test_exec_plugin_gets_args_env_and_cluster_info(tmp_path: Path) -> None:
    path = plugin(tmp_path, answer(token="tok-1"))
    user = exec_user(str(path), args=["get-token", "--x"], env=[{"name": "MY_VAR",
                                                                 "value": "v"}],
                     provideClusterInfo=True)
    creds = Credentials(user, "u", "cfg", cluster_info={"server": "https://s"}, env=os.environ)
    assert creds.current().authorization == "Bearer tok-1"
    assert creds.current().authorization == "Bearer tok-1"  # cached: no expiry given
    [call] = calls(tmp_path)
    assert call["argv"] == ["get-token", "--x"] and call["env"] == "v"
    assert call["info"] == {"apiVersion": V1, "kind": "ExecCredential",
                            "spec": {"interactive": False, "cluster": {"server": "https://s"}}}


def test_v1beta1_plugin_and_bare_names_found_on_path(tmp_path: Path) -> None:
    plugin(tmp_path, answer(V1BETA1, token="beta"), name="my-cred")
    user = {"exec": {"command": "my-cred", "apiVersion": V1BETA1}}  # IfAvailable by default
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    creds = Credentials(user, "u", "cfg", env=env, is_terminal=lambda: False)
    assert creds.current().authorization == "Bearer beta"
    assert "cluster" not in calls(tmp_path)[0]["info"]["spec"]  # provideClusterInfo is off


def test_expired_credentials_run_the_plugin_again(tmp_path: Path) -> None:
    path = plugin(tmp_path, answer(token="old", expirationTimestamp="2000-01-01T00:00:00Z"))
    creds = Credentials(exec_user(str(path)), "u", "cfg")
    creds.current()
    creds.current()
    assert creds.runs == 2


def test_client_certificate_from_the_plugin(tmp_path: Path) -> None:
    path = plugin(tmp_path, answer(clientCertificateData="CERT", clientKeyData="KEY",
                                   expirationTimestamp="2999-01-01T00:00:00Z"))
    auth = Credentials(exec_user(str(path)), "u", "cfg").current()
    assert (auth.authorization, auth.cert_pem, auth.key_pem) == (None, b"CERT", b"KEY")


@pytest.mark.parametrize(("body", "message"), [
    ("sys.stderr.write('first\\nlast words\\n'); sys.exit(3)\n",
     "exited with code 3: last words"),
    ("print('not json')\n", "did not print an ExecCredential"),
    (answer(V1BETA1, token="t"), "answered apiVersion 'client.authentication.k8s.io/v1beta1'"),
    (answer(), "answered neither a token nor a client certificate"),
    (answer(clientCertificateData="C"), "only one of clientCertificateData"),
    ("print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
     "'kind': 'ExecCredential'}))\n", "without status"),
])
def test_failing_plugins_are_cluster_errors_naming_them(tmp_path: Path, body: str,
                                                        message: str) -> None:
    path = plugin(tmp_path, body)
    creds = Credentials(exec_user(str(path)), "dev", "cfg")
    with pytest.raises(ClusterError) as caught:
        creds.current()
    text = str(caught.value)
    assert f'exec credential plugin "{path}" of user "dev"' in text and message in text


def test_missing_plugin_says_so_with_its_install_hint(tmp_path: Path) -> None:
    user = exec_user(str(tmp_path / "absent"), installHint="brew install\nthe-plugin")
    with pytest.raises(ClusterError, match=r"not found .*install hint: brew install the-plugin"):
        Credentials(user, "u", "cfg").current()


def test_interactive_always_without_a_terminal_is_an_error(tmp_path: Path) -> None:
    path = plugin(tmp_path, answer(token="t"))
    creds = Credentials(exec_user(str(path), interactiveMode="Always"), "u", "cfg",
                        is_terminal=lambda: False)
    with pytest.raises(ClusterError, match="needs a terminal"):
        creds.current()
    assert not (tmp_path / "calls").exists()


@pytest.mark.parametrize(("spec", "message"), [
    ({"apiVersion": "client.authentication.k8s.io/v1alpha1"}, "apiVersion"),
    ({"interactiveMode": None}, "interactiveMode: must be set"),
    ({"interactiveMode": "Sometimes"}, "interactiveMode: 'Sometimes'"),
])
def test_bad_exec_configs_are_usage_errors(spec: dict[str, Any], message: str) -> None:
    user = {"exec": {**exec_user("x")["exec"], **spec}}
    with pytest.raises(UsageError, match=message):
        Credentials(user, "u", "cfg")


def test_static_kinds_and_auth_provider(tmp_path: Path) -> None:
    assert Credentials({"username": "a", "password": "b"}, "u", "c").current().authorization \
        == "Basic YTpi"
    (tmp_path / "tok").write_text("from-file\n")
    assert Credentials({"tokenFile": str(tmp_path / "tok")}, "u", "c").current() \
        .authorization == "Bearer from-file"
    assert Credentials({}, "u", "c").current().authorization is None
    with pytest.raises(ClusterError, match=r'auth-provider "gcp", which kubectl removed in 1\.26'):
        Credentials({"auth-provider": {"name": "gcp"}}, "u", "c")


def test_a_401_runs_the_plugin_again_once(tmp_path: Path) -> None:
    path = plugin(tmp_path, answer(token="t"))
    creds = Credentials(exec_user(str(path)), "u", "cfg")
    used = creds.current()
    assert creds.refresh_after_401(used) is True
    creds.current()
    assert creds.runs == 2
    static = Credentials({"token": "t"}, "u", "cfg")
    assert static.refresh_after_401(static.current()) is False


# -- header values (the wire tier compares them with kubectl; these pin the encoding) ----------


@pytest.mark.parametrize("value", ["a\r\nX-Injected: yes", "a\n b", "a\rb", "a\x00b", "a\x7fb"])
def test_header_values_with_control_characters_are_refused_without_the_value(
        value: str) -> None:
    from kubectl_keepalive.kube.client.credentials import HeaderValueError, header_value

    with pytest.raises(HeaderValueError) as caught:
        header_value("Impersonate-User", value)
    assert "Impersonate-User" in str(caught.value)
    assert value not in str(caught.value)


def test_header_values_go_out_as_utf8_with_their_ends_trimmed() -> None:
    from kubectl_keepalive.kube.client.credentials import header_value

    wire = header_value("Impersonate-User", " jörg-日本\t")
    assert wire.encode("latin-1") == "jörg-日本".encode()
    assert header_value("Authorization", "Bearer a\tb") == "Bearer a\tb"


def test_a_token_with_a_newline_is_refused_naming_the_header(tmp_path: Path) -> None:
    creds = Credentials({"token": "secret-value\n"}, "u", str(tmp_path / "config"))
    with pytest.raises(UsageError) as caught:
        creds.current()
    assert "Authorization" in str(caught.value)
    assert "secret-value" not in str(caught.value)
