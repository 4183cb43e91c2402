"""Real Envoy config dumps (tests/golden, made by scripts/make_golden_dumps.py) against the
listeners a person read out of them (expected.json), through `status --from-file`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from kubectl_keepalive.cli import main

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.parent for p in GOLDEN.glob("*/expected.json")
               if "listeners" in json.loads(p.read_text()))


def _key(listener: dict[str, Any]) -> tuple[int, str, str]:
    return (listener["port"] or 0, listener["name"], listener["state"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_status_from_file_reads_what_envoy_wrote(case: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", "--from-file", str(case / expected["input"]), "-o", "json"], out, err,
                None, {})
    assert code == 0, err.getvalue()
    (gateway,) = json.loads(out.getvalue())["gateways"]
    (pod,) = gateway["pods"]
    keys = expected["listeners"][0].keys()
    got = sorted(({k: lst[k] for k in keys} for lst in pod["listeners"]), key=_key)
    assert got == sorted(expected["listeners"], key=_key)


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 8, CASES
