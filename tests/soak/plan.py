"""A soak's plan: steps drawn from one seeded random generator. Pure: no lab, no clock.

A step is a plugin command (enable, disable, diff, status, doctor, with random settings), a change
to the lab (scale a gateway to 1..3 replicas, delete one of its pods), or two enables at once
with different settings. An enable or disable may carry a fault done while it runs: the API
server frozen for 5-20 s, istiod killed (the lab starts it again), a pod deleted mid-rollout.
Steps are drawn one after another from `random.Random(seed)`, so the first K steps of a plan of
N steps are the plan of K steps: a failure at step K replays with `--steps K`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """A seeded lab gateway the soak acts on, and the -l it chooses it by."""

    name: str
    namespace: str
    deployment: str
    selector: str  # what the commands pass with -l
    revision: str  # the istiod that serves it


# The canary gateway is chosen by its revision's label: the filter must still select it by
# its Deployment (issue 24).
TARGETS = (
    Target("ingress", "istio-system", "istio-ingressgateway", "app=istio-ingressgateway",
           "default"),
    Target("canary", "istio-canary", "istio-ingressgateway-canary", "istio.io/rev=canary",
           "canary"),
)
ACTIONS = (("enable", 30), ("disable", 14), ("diff", 12), ("status", 8), ("doctor", 8),
           ("scale", 10), ("delete-pod", 6), ("race", 12))
FAULTS = ("freeze-apiserver", "kill-istiod", "delete-pod")
# Half of the enables and disables run with a fault.
FAULT_CHANCE = 0.5


@dataclass(frozen=True)
class Settings:
    idle: int
    interval: int
    probes: int

    def flags(self) -> list[str]:
        return ["--idle", f"{self.idle}s", "--interval", f"{self.interval}s",
                "--probes", str(self.probes)]


@dataclass(frozen=True)
class Step:
    index: int
    action: str
    target: Target
    settings: Settings
    no_restart: bool = False
    timeout: int = 90  # the command's --timeout, seconds
    fault: str | None = None
    fault_delay: float = 0.0  # seconds after the command starts, unless a marker comes first
    fault_seconds: float = 0.0  # how long the fault lasts (a freeze; istiod down)
    replicas: int = 1  # scale
    rival: Settings | None = None  # race: the other enable's settings
    rival_no_restart: bool = False

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.name
        return out


def _settings(rng: random.Random) -> Settings:
    return Settings(rng.randint(5, 120), rng.randint(2, 30), rng.randint(1, 9))


def _step(rng: random.Random, index: int) -> Step:
    names = [a for a, _ in ACTIONS]
    action = rng.choices(names, weights=[w for _, w in ACTIONS])[0]
    target = rng.choice(TARGETS)
    settings = _settings(rng)
    no_restart = rng.random() < 0.5
    timeout = rng.choice((60, 90, 120))
    fault = None
    delay = duration = 0.0
    if action in ("enable", "disable") and rng.random() < FAULT_CHANCE:
        fault = rng.choice(FAULTS)
        delay = round(rng.uniform(0.5, 6.0), 1)
        duration = round(rng.uniform(5.0, 20.0) if fault == "freeze-apiserver"
                         else rng.uniform(2.0, 5.0), 1)
    replicas = rng.randint(1, 3)
    rival = _settings(rng) if action == "race" else None
    rival_no_restart = rng.random() < 0.5 if action == "race" else False
    if rival == settings:
        rival = Settings(settings.idle + 1, settings.interval, settings.probes)
    return Step(index, action, target, settings, no_restart, timeout, fault, delay, duration,
                replicas, rival, rival_no_restart)


def make_plan(seed: int, steps: int) -> list[Step]:
    """`steps` steps drawn from `seed`; a shorter plan is a prefix of a longer one."""
    rng = random.Random(seed)
    return [_step(rng, i) for i in range(steps)]
