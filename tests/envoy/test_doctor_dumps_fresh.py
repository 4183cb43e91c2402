"""Tier 2: regenerate the doctor's golden dumps with the real Envoy and check that the timers
read from the fresh dumps still match the hand-written expectations next to the goldens.

Catches an Envoy upgrade that changes how the dump spells a timer (or drops a default)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.envoy import require_envoy
from tests.unit.test_doctor_timers import SCENARIOS, expected, flatten, read_golden

pytestmark = pytest.mark.envoy

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_doctor_dumps.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_doctor_dumps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_envoy()
    out = tmp_path_factory.mktemp("doctor-dumps")
    load_script().generate(out)
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_fresh_dump_has_the_golden_timers(fresh: Path, name: str) -> None:
    assert flatten(read_golden(name, fresh)) == expected(name)
    assert flatten(read_golden(name, fresh)) == flatten(read_golden(name))
