"""Tier 2: the committed golden dumps still say what the real Envoy does.

Re-runs scripts/make_golden_dumps.py into a temp dir and compares, case by case, the listener
versions found (name, port, protocol, state, static, socket options, rejection reason) and the
expected files with the committed ones. A new Envoy that words a rejection differently, or
stores socket options differently, fails here instead of leaving stale fixtures behind.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.envoy import require_envoy

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
SCRIPT = REPO / "scripts" / "make_golden_dumps.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden_dumps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _dump_of(folder: Path) -> Any:
    for name in ("config_dump.json", "listeners.json"):
        if (folder / name).exists():
            return _load(folder / name)
    raise AssertionError(f"{folder} has no dump")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_envoy()
    out = tmp_path_factory.mktemp("golden")
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, timeout=300)
    return out


GENERATOR = _generator()
# Only the folders the script owns; other golden folders (tests/golden/doctor, ...) are not ours.
CASES = sorted([c.name for c in GENERATOR.CASES] + [GENERATOR.ISTIOCTL_CASE])


def test_every_case_is_committed() -> None:
    missing = [case for case in CASES if not (GOLDEN / case / "expected.json").exists()]
    assert not missing, f"run scripts/make_golden_dumps.py: {missing} missing"


@pytest.mark.parametrize("case", CASES)
def test_golden_case_matches_a_fresh_envoy_run(fresh: Path, case: str) -> None:
    summary = GENERATOR.summary
    committed, regenerated = GOLDEN / case, fresh / case
    assert summary(_dump_of(regenerated)) == summary(_dump_of(committed))
    # The hand-written expectations: the script cross-checked them against the fresh dump.
    assert (_load(regenerated / "expected.json")["listeners"]
            == _load(committed / "expected.json")["listeners"])
