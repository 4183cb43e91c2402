"""terminal.safe over arbitrary text: printable, one line, cut to its bound, and a text that is
already safe and short comes back unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_keepalive import terminal

MARKER_ROOM = 40  # "... (cut: N characters in all)"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=400))
def test_safe_text_is_printable_one_line_and_cut(text: str, limit: int) -> None:
    shown = terminal.safe(text, limit)
    assert shown.isprintable()
    assert len(shown) <= limit + MARKER_ROOM
    if len(text) <= limit and text.isprintable():
        assert shown == text
    else:
        assert shown != text or text == ""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_safe_bytes_is_printable_and_cut(data: bytes) -> None:
    shown = terminal.safe_bytes(data)
    assert shown.isprintable()
    assert len(shown) <= terminal.CUT + MARKER_ROOM


def test_escapes_name_the_characters() -> None:
    assert terminal.safe("a\x1b[2Jb\r\nc\u202e") == "a\\x1b[2Jb\\r\\nc\\u202e"
    assert terminal.safe("x" * 301).endswith("... (cut: 301 characters in all)")
