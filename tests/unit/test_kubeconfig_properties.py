"""Any kubeconfig, however malformed: resolving it and building the connection either works or
raises the project's UsageError/ClusterError; never a traceback, never slowly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_keepalive.errors import ClusterError, UsageError
from kubectl_keepalive.kube.client import connection
from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags, resolve

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["a", "c", "u", "https://127.0.0.1:6443", "::", "%%",
                                     "LS0tLQ==", "client.authentication.k8s.io/v1", "Never",
                                     "Always", "./cred.sh"]))
ANY = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12)
KEYS = {
    "cluster": ["server", "certificate-authority", "certificate-authority-data",
                "insecure-skip-tls-verify", "tls-server-name", "proxy-url", "extensions"],
    "user": ["token", "tokenFile", "client-certificate", "client-certificate-data",
             "client-key", "client-key-data", "username", "password", "as", "as-groups",
             "as-uid", "exec", "auth-provider"],
    "context": ["cluster", "user", "namespace"],
}
EXEC = st.fixed_dictionaries({}, optional={
    "command": st.one_of(SCALARS, st.just("./missing-plugin")),
    "apiVersion": st.sampled_from(["client.authentication.k8s.io/v1",
                                   "client.authentication.k8s.io/v1beta1", "x", ""]),
    "args": ANY, "env": ANY, "interactiveMode": SCALARS, "provideClusterInfo": ANY,
    "installHint": ANY})


def inner(kind: str) -> st.SearchStrategy[Any]:
    values = {key: (st.one_of(EXEC, ANY) if key == "exec" else st.one_of(SCALARS, ANY))
              for key in KEYS[kind]}
    return st.one_of(st.fixed_dictionaries({}, optional=values), ANY)


def entries(section: str, kind: str) -> st.SearchStrategy[Any]:
    entry = st.fixed_dictionaries({}, optional={"name": st.sampled_from(["a", "c", "u", ""]),
                                                kind: inner(kind)})
    return st.one_of(st.lists(st.one_of(entry, ANY), max_size=3), ANY)


CONFIGS = st.fixed_dictionaries({}, optional={
    "clusters": entries("clusters", "cluster"), "users": entries("users", "user"),
    "contexts": entries("contexts", "context"),
    "current-context": st.one_of(st.just("a"), SCALARS)})
FLAGS = st.builds(ConnectionFlags, cluster=st.sampled_from([None, "c", "x"]),
                  user=st.sampled_from([None, "u", "x"]),
                  server=st.sampled_from([None, "https://s:1", "ftp://x", "http://[::1"]),
                  token=st.sampled_from([None, "t"]),
                  insecure_skip_tls_verify=st.booleans(),
                  certificate_authority=st.sampled_from([None, "/nonexistent/ca"]),
                  request_timeout=st.sampled_from([None, 0.0, 2.0]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(config=st.one_of(CONFIGS, ANY), flags=FLAGS)
def test_any_kubeconfig_resolves_or_is_refused_with_a_project_error(
        tmp_path: Path, config: Any, flags: ConnectionFlags) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    try:
        resolved = resolve(str(path), None, None, {"HOME": str(tmp_path)}, flags=flags)
        built = connection.build(resolved, env={})
        if built.secure:
            connection.ssl_context(built)
    except (UsageError, ClusterError) as exc:
        assert str(exc) and "\n" not in str(exc)
    assert time.monotonic() - started < 2.0


@given(data=st.binary(max_size=300))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_as_a_kubeconfig(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "config"
    path.write_bytes(data)
    try:
        resolve(str(path), None, None, {})
    except UsageError as exc:
        assert str(exc).startswith(("kubeconfig ", "no current context", "context "))
