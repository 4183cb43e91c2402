from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kubeconfig import resolve


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
    from kubectl_keepalive.kube import KubeCluster

    KubeCluster(resolve(str(path), None, None, {}))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_default_namespace_and_home_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    write(tmp_path / ".kube" / "config", "a", {"a": {"cluster": "c", "user": "u"}},
          {"c": "https://x"})
    resolved = resolve(None, None, None, {"HOME": str(tmp_path)})
    assert resolved is not None and resolved.namespace == "default"
