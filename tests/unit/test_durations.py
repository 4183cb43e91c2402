from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_keepalive.durations import check_range, format_duration, parse_duration
from kubectl_keepalive.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7s", 7), ("5m", 300), ("1h30m", 5400), ("45", 45), ("1h2m3s", 3723), (" 10s ", 10)],
)
def test_parses_kubectl_durations(text: str, seconds: int) -> None:
    assert parse_duration(text, "--idle") == seconds


@pytest.mark.parametrize("text", ["", "1.5s", "5x", "-3", "s", "3s5m", "1m1m", "1d", "10 s"])
def test_rejects_what_is_not_whole_seconds(text: str) -> None:
    with pytest.raises(UsageError, match="--idle"):
        parse_duration(text, "--idle")


def test_range_names_the_flag_and_bounds() -> None:
    assert check_range(127, 1, 127, "--probes") == 127
    with pytest.raises(UsageError, match=r"--probes must be between 1 and 127, got 128"):
        check_range(128, 1, 127, "--probes")
    with pytest.raises(UsageError, match="between 1s and 32767s"):
        check_range(0, 1, 32767, "--idle", "s")


@given(st.integers(min_value=0, max_value=10**7))
def test_format_and_parse_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds), "--timeout") == seconds


@pytest.mark.parametrize("text", ["²", "٣s", "\uff11m", "9" * 5000, "9" * 5000 + "s", "10\n",
                                  "999999999"])
def test_only_ascii_digits_and_bounded_values(text: str) -> None:
    with pytest.raises(UsageError, match="--idle"):
        parse_duration(text, "--idle")


@given(st.text(max_size=30))
def test_any_text_is_seconds_in_bounds_or_a_usage_error(text: str) -> None:
    from kubectl_keepalive.durations import MAX_SECONDS

    try:
        seconds = parse_duration(text, "--timeout")
    except UsageError as exc:
        assert "--timeout" in str(exc)
    else:
        assert 0 <= seconds <= MAX_SECONDS
        assert text.strip(" \t").isascii()
