"""Text from outside (API servers, proxies, Envoy, pods) made safe to show on a terminal.

One rule wherever such text leaves the program (error and note lines, table cells, plan lines):
control characters, line breaks and other invisible characters (bidi overrides) are shown
escaped as repr() shows them (`\\x1b`, `\\n`, `\\u202e`), so a server can neither steer the
terminal nor forge a line of its own; and one piece of text is cut to CUT characters, so a 20 MB
error message is not a 20 MB line. `-o json|yaml` carry the data as it is: their encoders escape
it. The plugin's own cursor control on a terminal is not written through here.
"""

from __future__ import annotations

CUT = 300  # characters of one piece of outside text shown on a line
LINE_CUT = 16384  # a whole error line (the plugin's words around cut pieces): a last bound


def escaped(text: str) -> str:
    """`text` on one line, every character that is not printable shown as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def safe(text: str, limit: int = CUT) -> str:
    """`text` escaped and cut to `limit` characters, the cut marked with the full length."""
    if len(text) <= limit and text.isprintable():
        return text
    shown = escaped(text[:limit])
    if len(shown) <= limit and len(text) <= limit:
        return shown
    return f"{shown[:limit]}... (cut: {len(text)} characters in all)"


def safe_bytes(data: bytes, limit: int = CUT) -> str:
    """Bytes from outside (a stream's error channel, a process's stderr) as safe text."""
    head = data[: limit * 4].decode("utf-8", errors="replace")
    if len(data) <= limit * 4:
        return safe(head, limit)
    return f"{escaped(head[:limit])[:limit]}... (cut: {len(data)} bytes in all)"
