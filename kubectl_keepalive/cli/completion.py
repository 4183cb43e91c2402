"""Shell completion for kubectl >= 1.26, which asks an executable `kubectl_complete-keepalive`.

kubectl runs that executable with the words typed after `kubectl keepalive` (the last one is
the word being completed, maybe empty) and reads cobra's protocol back: one candidate per line,
then `:<directive>`. The script only calls back into the plugin (`kubectl-keepalive __complete`),
so completion follows the real flags. Namespaces and contexts come from kubectl itself.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Callable, Sequence

from kubectl_keepalive.errors import UsageError

SCRIPT_NAME = "kubectl_complete-keepalive"
# cobra's ShellCompDirective values
DIRECTIVE_DEFAULT = 0
DIRECTIVE_NO_FILE = 4

Lookup = Callable[[list[str]], list[str]]
_FILE_FLAGS = ("--from-file", "--kubeconfig", "--install", "--certificate-authority",
               "--client-certificate", "--client-key")


def completion_script() -> str:
    return (
        "#!/bin/sh\n"
        "# Shell completion for `kubectl keepalive` (kubectl >= 1.26 runs this on TAB).\n"
        'exec kubectl-keepalive __complete "$@"\n'
    )


def install_completion(dest_dir: str) -> str:
    """Write the script as DEST_DIR/kubectl_complete-keepalive, executable; return its path.

    The folder must exist (it should be on PATH; creating a stray one would hide a typo)."""
    if not os.path.isdir(dest_dir):
        raise UsageError(f"--install {dest_dir}: no such directory (give a directory on PATH)")
    path = os.path.join(dest_dir, SCRIPT_NAME)
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(completion_script())
        mode = os.stat(path).st_mode
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise UsageError(f"--install: cannot write {path}: {exc.strerror or exc}") from None
    return path


def _kubectl_names(args: list[str]) -> list[str]:
    import subprocess  # here: printing the script must not pay for it

    try:
        done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("/", 1)[-1] for line in done.stdout.split() if line]


def complete(
    words: Sequence[str], parser: argparse.ArgumentParser, lookup: Lookup = _kubectl_names
) -> tuple[list[str], int]:
    """Candidates for the last of `words` and the cobra directive."""
    words = list(words) or [""]
    partial, before = words[-1], words[:-1]
    subparsers = _subparsers(parser)
    command = next((w for w in before if w in subparsers), None)
    active = subparsers[command] if command else parser
    previous = before[-1] if before else ""
    values = _flag_values(previous, active, before, lookup)
    if values is not None:
        return [v for v in values if v.startswith(partial)], DIRECTIVE_NO_FILE
    if previous in _FILE_FLAGS:
        return [], DIRECTIVE_DEFAULT  # let the shell complete file names
    if partial.startswith("-"):
        flags = sorted(f for action in active._actions for f in action.option_strings
                       if f.startswith("--") or len(f) == 2)
        return [f for f in flags if f.startswith(partial)], DIRECTIVE_NO_FILE
    if command is None:
        return [c for c in sorted(subparsers) if c.startswith(partial)], DIRECTIVE_NO_FILE
    return [], DIRECTIVE_NO_FILE


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flag_values(previous: str, parser: argparse.ArgumentParser, before: list[str],
                 lookup: Lookup) -> list[str] | None:
    if previous in ("-n", "--namespace"):
        return lookup(["get", "namespaces", "-o", "name", *_cluster_flags(before)])
    if previous == "--context":
        return lookup(["config", "get-contexts", "-o", "name", *_kubeconfig_flag(before)])
    for action in parser._actions:
        if previous in action.option_strings and action.choices is not None:
            return [str(c) for c in action.choices]
    return None


def _kubeconfig_flag(words: list[str]) -> list[str]:
    for i, word in enumerate(words[:-1]):
        if word == "--kubeconfig":
            return ["--kubeconfig", words[i + 1]]
    return []


def _cluster_flags(words: list[str]) -> list[str]:
    flags = _kubeconfig_flag(words)
    for i, word in enumerate(words[:-1]):
        if word == "--context":
            flags += ["--context", words[i + 1]]
    return flags


def render(candidates: list[str], directive: int) -> str:
    return "".join(f"{c}\n" for c in candidates) + f":{directive}\n"
