"""Server text made safe to print: the project's one rule (kubectl_keepalive.terminal)."""

from __future__ import annotations

from kubectl_keepalive.terminal import safe, safe_bytes


def printable(raw: bytes | str, limit: int = 120) -> str:
    """`raw` as one printable line: control characters escaped, cut at `limit` characters."""
    return safe_bytes(raw, limit) if isinstance(raw, bytes) else safe(raw, limit)
