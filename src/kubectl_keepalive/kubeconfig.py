"""Resolve kubeconfig, context and namespace exactly as kubectl does, without writing anything.

kubectl merges a KUBECONFIG list with the *first* file winning for every named entry and for
current-context; the Python client would take the last file's context, so the merge is done here
and the client only ever sees one merged dict. Relative file paths are made absolute against the
file that named them, as kubectl does. Nothing here writes back to the user's files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubectl_keepalive.errors import UsageError

_PATH_KEYS = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}


@dataclass(frozen=True)
class ConnectionFlags:
    """kubectl's connection flags (cli-runtime's ConfigFlags); None or empty when not given.

    They override what the kubeconfig's context says, as in kubectl.
    """

    kubeconfig: str | None = None
    context: str | None = None
    cluster: str | None = None
    user: str | None = None
    server: str | None = None
    token: str | None = None
    as_user: str | None = None
    as_groups: tuple[str, ...] = ()
    as_uid: str | None = None
    certificate_authority: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    request_timeout: float | None = None  # seconds; None: the plugin's default


@dataclass(frozen=True)
class ResolvedConfig:
    """A merged kubeconfig, the context to use and the namespace it implies."""

    config: dict[str, Any] = field(hash=False)
    context: str
    namespace: str
    namespace_from_flag: bool
    server: str
    files: tuple[str, ...]


def kubeconfig_files(flag: str | None, env: Mapping[str, str]) -> list[Path]:
    if flag:
        path = Path(flag).expanduser()
        if not path.is_file():
            raise UsageError(f"kubeconfig file {flag} does not exist")
        return [path]
    listed = env.get("KUBECONFIG", "")
    if listed:
        # kubectl skips list entries that do not exist.
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p and Path(p).is_file()]
    default = Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"
    return [default] if default.is_file() else []


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml  # imported here: `--help` and `version` must not pay for it

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read kubeconfig {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"kubeconfig {path} is not a kubeconfig mapping")
    return data


def _absolutize(section: str, item: dict[str, Any], base: Path) -> dict[str, Any]:
    inner_key = section[:-1]  # clusters -> cluster, users -> user
    inner = item.get(inner_key)
    if not isinstance(inner, dict):
        return item
    inner = dict(inner)
    for key in _PATH_KEYS.get(section, ()):
        value = inner.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            inner[key] = str((base / value).resolve())
    return {**item, inner_key: inner}


def merge(files: list[Path]) -> dict[str, Any]:
    """kubectl's merge: for clusters, users and contexts the first file naming an entry wins."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": [], "current-context": ""}
    seen: dict[str, set[str]] = {"clusters": set(), "users": set(), "contexts": set()}
    for path in files:
        data = _load_yaml(path)
        for section in ("clusters", "users", "contexts"):
            for item in data.get(section) or ():
                name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(name, str) or name in seen[section]:
                    continue
                seen[section].add(name)
                merged[section].append(_absolutize(section, item, path.parent))
        if not merged["current-context"] and data.get("current-context"):
            merged["current-context"] = str(data["current-context"])
    return merged


def resolve(
    kubeconfig_flag: str | None,
    context_flag: str | None,
    namespace_flag: str | None,
    env: Mapping[str, str],
) -> ResolvedConfig | None:
    """The merged config, or None when there is none and the plugin runs inside a pod."""
    files = kubeconfig_files(kubeconfig_flag, env)
    if not files and not context_flag and env.get("KUBERNETES_SERVICE_HOST"):
        return None
    merged = merge(files)
    context_name = context_flag or merged["current-context"]
    if not context_name:
        raise UsageError(
            "no current context is set: pass --context or run `kubectl config use-context`"
        )
    contexts = {c["name"]: c.get("context") or {} for c in merged["contexts"]}
    if context_name not in contexts:
        raise UsageError(f'context "{context_name}" does not exist')
    context = contexts[context_name]
    clusters = {c["name"]: c.get("cluster") or {} for c in merged["clusters"]}
    cluster = clusters.get(context.get("cluster", ""))
    if cluster is None:
        raise UsageError(
            f'context "{context_name}" names cluster "{context.get("cluster")}", which does not '
            "exist in the kubeconfig"
        )
    namespace = namespace_flag or context.get("namespace") or "default"
    return ResolvedConfig(
        config=merged,
        context=context_name,
        namespace=namespace,
        namespace_from_flag=bool(namespace_flag),
        server=str(cluster.get("server", "")),
        files=tuple(str(p) for p in files),
    )
