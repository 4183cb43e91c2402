"""Parse kubectl-style durations (`7s`, `5m`, `1h30m`, bare seconds) and check kernel ranges.

Pure: no I/O. Raises UsageError with the flag name so the CLI can print one line.
"""

from __future__ import annotations

import re

from kubectl_keepalive.errors import UsageError

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([hms])")

# Kernel limits for the keepalive socket options (include/net/tcp.h: MAX_TCP_KEEPIDLE etc.).
KEEPIDLE_MAX = 32767
KEEPINTVL_MAX = 32767
KEEPCNT_MAX = 127


def parse_duration(text: str, flag: str) -> int:
    """Return whole seconds for `text`; fractions and unknown units are errors."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    if not value or _PART.sub("", value) != "":
        raise UsageError(
            f"invalid duration {text!r} for {flag}: use whole seconds like 45, 45s, 5m or 1h30m"
        )
    parts = _PART.findall(value)
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units) or units != sorted(units, key="hms".index):
        raise UsageError(f"invalid duration {text!r} for {flag}: units must be in order h, m, s")
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)


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
