"""A short soak in `make test`: a fixed seed, a few steps, bounded in time (see runner.py for
the invariants; `make soak SEED=... STEPS=...` runs a long one).

KEEPALIVE_SOAK_SEED, KEEPALIVE_SOAK_STEPS and KEEPALIVE_SOAK_RECORD change the seed, the length
and where the JSON-lines record goes (default: the test's tmp dir).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cluster.conftest import Lab
from tests.soak.plan import make_plan
from tests.soak.runner import run_soak

pytestmark = pytest.mark.soak

SEED = int(os.environ.get("KEEPALIVE_SOAK_SEED", "1338"))
STEPS = int(os.environ.get("KEEPALIVE_SOAK_STEPS", "14"))
# No step starts after this many seconds (the steps under way finish, then the lab is put back):
# with the restore, the short soak stays within about 3 minutes on a 2-core machine.
BUDGET = float(os.environ.get("KEEPALIVE_SOAK_BUDGET", "120"))


def test_a_short_seeded_soak_keeps_every_invariant(lab: Lab, tmp_path: Path) -> None:
    record = Path(os.environ.get("KEEPALIVE_SOAK_RECORD") or tmp_path / f"soak-{SEED}.jsonl")
    plan = make_plan(SEED, STEPS)
    done = run_soak(lab, plan, record, SEED, budget=BUDGET)
    assert done >= 1, f"no step ran; record {record}"
