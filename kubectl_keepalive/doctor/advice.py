"""Keepalive settings for a known idle timeout in front of the gateway: what `enable` and `diff`
use without --idle, and what doctor suggests. Its own module so that they load no more of the
doctor than this."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kubectl_keepalive.durations import format_duration
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import KeepaliveSettings

# What `enable` uses when nothing is known (app.DEFAULT_SETTINGS); kept here to stay pure.
DEFAULT_KEEPALIVE = KeepaliveSettings(idle=60, interval=10, probes=3)


@dataclass(frozen=True)
class KeepaliveAdvice:
    settings: KeepaliveSettings
    reason: str


def recommend_keepalive(
    idle_timeout_s: float, default: KeepaliveSettings = DEFAULT_KEEPALIVE
) -> KeepaliveAdvice:
    """Keepalive settings safely below a packet-counting idle timer of `idle_timeout_s`.

    Aim: a probe (and, if one is lost, its retry after `interval`) reaches the middlebox within
    half its timeout, so one lost probe or a slow timer never lets the flow expire.
    """
    if idle_timeout_s < 2:
        raise UsageError(f"an idle timeout of {idle_timeout_s:g}s is too short for keepalive")
    budget = idle_timeout_s / 2
    shown = format_duration(int(idle_timeout_s))
    if default.idle + default.interval <= budget:
        return KeepaliveAdvice(default, (
            f"the defaults (first probe after {default.idle}s, retry every {default.interval}s) "
            f"stay under half of the {shown} idle timeout in front"))
    interval = max(1, math.floor(budget / 4))
    idle = max(1, math.floor(budget) - interval)
    settings = KeepaliveSettings(idle=idle, interval=interval, probes=default.probes)
    return KeepaliveAdvice(settings, (
        f"first probe after {idle}s and a retry {interval}s later reach the middlebox within "
        f"half of its {shown} idle timeout"))
