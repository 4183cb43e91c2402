from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kube.client.kubeconfig import resolve


def write(path: Path, current: str, contexts: dict[str, dict[str, str]],
          clusters: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
        "clusters": [{"name": n, "cluster": {"server": s, "certificate-authority": "ca.crt"}}
                     for n, s in clusters.items()],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    return path


def test_kubeconfig_list_merges_with_the_first_file_winning(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = write(tmp_path / "a" / "one", "ctx-a",
                  {"ctx-a": {"cluster": "c", "user": "u", "namespace": "istio-system"}},
                  {"c": "https://first:6443"})
    second = write(tmp_path / "two", "ctx-b",
                   {"ctx-b": {"cluster": "c", "user": "u"}, "ctx-a": {"cluster": "x"}},
                   {"c": "https://second:6443"})
    env = {"KUBECONFIG": os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)])}
    resolved = resolve(None, None, None, env)
    assert resolved is not None
    assert resolved.context == "ctx-a"
    assert resolved.namespace == "istio-system"  # the context's namespace is the default
    assert resolved.server == "https://first:6443"
    cluster = resolved.config["clusters"][0]["cluster"]
    # Relative paths resolve against the file that named them, as kubectl does.
    assert cluster["certificate-authority"] == str((tmp_path / "a" / "ca.crt").resolve())
    other = resolve(None, "ctx-b", "team", env)
    assert other is not None and (other.namespace, other.server) == ("team",
                                                                     "https://first:6443")


def test_unknown_context_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "c", "a", {"a": {"cluster": "c", "user": "u"}}, {"c": "https://x"})
    with pytest.raises(UsageError, match='context "nope" does not exist'):
        resolve(str(path), "nope", None, {})
    with pytest.raises(UsageError, match="does not exist"):
        resolve(str(tmp_path / "absent"), None, None, {})


def test_resolving_never_writes_the_kubeconfig(tmp_path: Path) -> None:
    path = write(tmp_path / "c", "a", {"a": {"cluster": "c", "user": "u"}}, {"c": "https://x"})
    (tmp_path / "ca.crt").write_text("not used: no request is made\n")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    resolve(str(path), None, None, {})
    from kubectl_keepalive.kube.api import KubeCluster

    KubeCluster(resolve(str(path), None, None, {}))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_default_namespace_and_home_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    write(tmp_path / ".kube" / "config", "a", {"a": {"cluster": "c", "user": "u"}},
          {"c": "https://x"})
    resolved = resolve(None, None, None, {"HOME": str(tmp_path)})
    assert resolved is not None and resolved.namespace == "default"


# -- shapes: every malformed kubeconfig is a UsageError naming the file and the field ---------

GOOD = {
    "apiVersion": "v1", "kind": "Config", "current-context": "a",
    "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
}


@pytest.mark.parametrize(("change", "field"), [
    ({"clusters": 5}, "clusters: expected a list, got a number"),
    ({"contexts": ["a"]}, "contexts[0]: expected a mapping, got a string"),
    ({"contexts": [{"name": "a", "context": "c"}]}, "contexts[0].context: expected a mapping"),
    ({"clusters": [{"name": "c", "cluster": []}]}, "clusters[0].cluster: expected a mapping"),
    ({"clusters": [{"name": "c", "cluster": {"server": "https://x",
                                             "certificate-authority-data": "%%%"}}]},
     "clusters[0].cluster.certificate-authority-data: not valid base64"),
    ({"users": [{"name": "u", "user": {"client-key-data": "a"}}]},
     "users[0].user.client-key-data: not valid base64"),
    ({"users": [{"name": "u", "user": {"token": 7}}]}, "users[0].user.token: expected a string"),
    ({"users": [{"name": 3, "user": {}}]}, "users[0].name: expected a non-empty string"),
    ({"users": [{"name": "u", "user": {"exec": {"command": "x", "args": "y"}}}]},
     "users[0].user.exec.args: expected a list of strings"),
    ({"users": [{"name": "u", "user": {"exec": {"command": "x", "env": [{"value": "v"}]}}}]},
     "users[0].user.exec.env[0]: expected a mapping with name and value"),
    ({"current-context": ["a"]}, "current-context: expected a string"),
])
def test_wrong_shapes_name_the_file_and_field(tmp_path: Path, change: dict[str, object],
                                              field: str) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(UsageError) as caught:
        resolve(str(path), None, None, {})
    assert str(caught.value) == f"kubeconfig {path}: {field}" or str(caught.value).startswith(
        f"kubeconfig {path}: {field}")


@pytest.mark.parametrize("content", [b"\x00\xff\xfe binary", b"- just\n- a list\n",
                                     b"a: [unclosed", b"[" * 100_000])
def test_unreadable_files_are_usage_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=f"kubeconfig {path}: "):
        resolve(str(path), None, None, {})


def test_missing_files_named_by_paths_fail_when_connecting(tmp_path: Path) -> None:
    from kubectl_keepalive.kube.client import connection

    config = {**GOOD, "users": [{"name": "u", "user": {"client-certificate": "nope.crt",
                                                       "client-key": "nope.key"}}]}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    resolved = resolve(str(path), None, None, {})
    with pytest.raises(UsageError, match=rf'kubeconfig {path}: user "u".client-certificate: '
                                         rf"cannot read {tmp_path / 'nope.crt'}"):
        connection.build(resolved)


# -- kubectl's connection flags -----------------------------------------------------------------


def two_of_everything(tmp_path: Path) -> Path:
    ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"  # valid base64; never loaded here
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "contexts": [{"name": "a", "context": {"cluster": "c1", "user": "u1",
                                                 "namespace": "n1"}}],
        "clusters": [
            {"name": "c1", "cluster": {"server": "https://one:6443",
                                       "certificate-authority-data": ca,
                                       "tls-server-name": "one.internal"}},
            {"name": "c2", "cluster": {"server": "https://two:6443"}},
        ],
        "users": [
            {"name": "u1", "user": {"exec": {"command": "./bin/cred", "apiVersion":
                                             "client.authentication.k8s.io/v1",
                                             "interactiveMode": "Never"}}},
            {"name": "u2", "user": {"token": "two", "as": "someone"}},
        ],
    }
    path = tmp_path / "cfg" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    return path


def test_cluster_and_user_flags_pick_other_entries(tmp_path: Path) -> None:
    from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

    path = two_of_everything(tmp_path)
    plain = resolve(str(path), None, None, {})
    # A relative exec command is resolved against the kubeconfig's folder, as client-go does.
    assert plain.user["exec"]["command"] == str((path.parent / "bin" / "cred").resolve())
    picked = resolve(str(path), None, None, {}, flags=ConnectionFlags(cluster="c2", user="u2"))
    assert (picked.server, picked.user["token"], picked.namespace) == ("https://two:6443",
                                                                       "two", "n1")
    with pytest.raises(UsageError, match='user "nobody" does not exist'):
        resolve(str(path), None, None, {}, flags=ConnectionFlags(user="nobody"))


def test_server_ca_insecure_and_sni_overrides_follow_clientcmd(tmp_path: Path) -> None:
    from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

    path = two_of_everything(tmp_path)
    moved = resolve(str(path), None, None, {}, flags=ConnectionFlags(server="https://lb:443"))
    # A new --server drops the kubeconfig's tls-server-name but keeps its CA.
    assert moved.server == "https://lb:443" and "tls-server-name" not in moved.cluster
    assert moved.cluster["certificate-authority-data"]
    insecure = resolve(str(path), None, None, {},
                       flags=ConnectionFlags(insecure_skip_tls_verify=True))
    assert insecure.cluster["insecure-skip-tls-verify"] is True
    assert "certificate-authority-data" not in insecure.cluster
    ca = resolve(str(path), None, None, {}, flags=ConnectionFlags(
        certificate_authority="ca.pem", tls_server_name="sni"))
    assert ca.cluster["certificate-authority"] == str(Path("ca.pem").resolve())
    assert ca.cluster["tls-server-name"] == "sni"
    assert "certificate-authority-data" not in ca.cluster


def test_token_replaces_the_users_auth_and_impersonation_becomes_headers(
        tmp_path: Path) -> None:
    from kubectl_keepalive.kube.client import connection
    from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

    path = two_of_everything(tmp_path)
    flags = ConnectionFlags(token="flag-token", as_user="jane", as_groups=("g1", "g2"),
                            as_uid="42", insecure_skip_tls_verify=True, request_timeout=2.0)
    resolved = resolve(str(path), None, None, {}, flags=flags)
    assert "exec" not in resolved.user and resolved.user["token"] == "flag-token"
    built = connection.build(resolved)
    assert built.credentials.current().authorization == "Bearer flag-token"
    assert built.impersonation == (("Impersonate-User", "jane"), ("Impersonate-Group", "g1"),
                                   ("Impersonate-Group", "g2"), ("Impersonate-Uid", "42"))
    assert built.request_timeout == 2.0
    assert resolve(str(path), None, None, {}, flags=ConnectionFlags(
        request_timeout=0)).request_timeout is None
    assert resolve(str(path), None, None, {}).request_timeout == 30.0


def test_server_flag_works_without_any_kubeconfig(tmp_path: Path) -> None:
    from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

    resolved = resolve(None, None, None, {"HOME": str(tmp_path)},
                       flags=ConnectionFlags(server="https://api:6443", token="t"))
    assert (resolved.server, resolved.user, resolved.namespace) == (
        "https://api:6443", {"token": "t"}, "default")


def test_in_cluster_reads_the_service_account(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from kubectl_keepalive.kube.client import connection, kubeconfig

    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("gateways")
    (tmp_path / "ca.crt").write_text("unused here")
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT_DIR", str(tmp_path))
    env = {"HOME": str(tmp_path / "nohome"), "KUBERNETES_SERVICE_HOST": "10.0.0.1",
           "KUBERNETES_SERVICE_PORT": "443"}
    resolved = resolve(None, None, None, env)
    assert resolved.in_cluster and resolved.namespace == "gateways"
    built = connection.build(resolved)
    assert built.server == "https://10.0.0.1:443"
    assert built.credentials.current().authorization == "Bearer sa-token"


def test_libyaml_only_where_it_bounds_nesting() -> None:
    """PyYAML 6.0.3's C loader crashes the interpreter on deep flow nesting: never used there."""
    from types import SimpleNamespace

    from kubectl_keepalive.kube.client.kubeconfig import _safe_loader

    def fake(version: str, libyaml: bool = True) -> object:
        return SimpleNamespace(__version__=version, __with_libyaml__=libyaml,
                               CSafeLoader="C", SafeLoader="Python")

    assert _safe_loader(fake("6.0.3")) == "Python"
    assert _safe_loader(fake("6.0.4")) == "C"
    assert _safe_loader(fake("6.1.0")) == "C"
    assert _safe_loader(fake("6.0.4", libyaml=False)) == "Python"


@pytest.mark.parametrize("section", ["contexts", "clusters", "users"])
def test_two_entries_of_one_name_refuse_the_file_without_printing_them(
        tmp_path: Path, section: str) -> None:
    config: dict[str, Any] = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://k:6443"}}],
        "users": [{"name": "u", "user": {"token": "secret-one"}}],
    }
    first = config[section][0]
    config[section] = [first, {**first, "name": first["name"]}]
    config["users"][-1] = {"name": "u", "user": {"token": "secret-two"}}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(UsageError) as caught:
        resolve(str(path), None, None, {})
    assert f"{section}[1].name" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_as_user_extra_must_map_names_to_lists_of_strings(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://k:6443"}}],
        "users": [{"name": "u", "user": {"as": "jane", "as-user-extra": {"scopes": "view"}}}],
    }))
    with pytest.raises(UsageError, match=r"users\[0\]\.user\.as-user-extra"):
        resolve(str(path), None, None, {})
