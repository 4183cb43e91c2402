"""Server text made safe to print: control characters escaped, length bounded."""

from __future__ import annotations


def printable(raw: bytes | str, limit: int = 120) -> str:
    """`raw` as one printable line: undecodable bytes, line breaks and other control characters
    shown escaped (as repr shows them), cut at `limit` characters."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    cut = len(text) > limit
    text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text + ("..." if cut else "")
