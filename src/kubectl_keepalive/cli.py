"""Command line: parse, validate, run a use case, print, choose the exit code (skeleton)."""

from __future__ import annotations

import sys

from kubectl_keepalive import __version__


def main(argv: list[str]) -> int:
    if argv[:1] == ["version"]:
        print(f"kubectl-keepalive {__version__}")
        return 0
    print("usage: kubectl keepalive {status,diff,enable,disable,version}", file=sys.stderr)
    return 2


def entry_point() -> None:
    sys.exit(main(sys.argv[1:]))
