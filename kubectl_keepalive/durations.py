"""Parse kubectl-style durations (`7s`, `5m`, `1h30m`, bare seconds) and check kernel ranges.

Pure: no I/O. Raises UsageError with the flag name so the CLI can print one line.
"""

from __future__ import annotations

import re

from kubectl_keepalive.errors import UsageError

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
# ASCII digits only: `\d` and str.isdigit accept `²` and other scripts' digits, which int()
# then refuses or reads in ways nobody typed. Parts longer than this are refused before int()
# (Python refuses to convert more than 4,300 digits, and no sane duration needs ten).
_PART = re.compile(r"([0-9]{1,9})([hms])", re.ASCII)
_SECONDS = re.compile(r"[0-9]{1,9}", re.ASCII)
MAX_SECONDS = 10**8  # about three years: longer is a typo, and time arithmetic stays exact

# Kernel limits for the keepalive socket options (include/net/tcp.h: MAX_TCP_KEEPIDLE etc.).
KEEPIDLE_MAX = 32767
KEEPINTVL_MAX = 32767
KEEPCNT_MAX = 127


def parse_duration(text: str, flag: str) -> int:
    """Return whole seconds for `text`; fractions and unknown units are errors."""
    value = text.strip(" \t")
    if _SECONDS.fullmatch(value):
        return _bounded(int(value), text, flag)
    if not value or _PART.sub("", value) != "":
        raise UsageError(
            f"invalid duration {_shown(text)} for {flag}: use whole seconds like 45, 45s, 5m or "
            "1h30m"
        )
    parts = _PART.findall(value)
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units) or units != sorted(units, key="hms".index):
        raise UsageError(
            f"invalid duration {_shown(text)} for {flag}: units must be in order h, m, s")
    return _bounded(sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts), text, flag)


def _bounded(seconds: int, text: str, flag: str) -> int:
    if seconds > MAX_SECONDS:
        raise UsageError(f"duration {_shown(text)} for {flag} is too long (at most "
                         f"{format_duration(MAX_SECONDS)})")
    return seconds


def _shown(text: str, limit: int = 40) -> str:
    """The value as typed, cut short: an error line stays one readable line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_range(value: int, low: int, high: int, flag: str, unit: str = "") -> int:
    """Return `value` when low <= value <= high, else a UsageError naming the flag."""
    if not low <= value <= high:
        raise UsageError(f"{flag} must be between {low}{unit} and {high}{unit}, got {value}{unit}")
    return value


def format_duration(seconds: int) -> str:
    """Shortest kubectl-style rendering: 90 -> 1m30s, 3600 -> 1h, 7 -> 7s."""
    if seconds == 0:
        return "0s"
    out = ""
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return out
