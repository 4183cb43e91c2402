"""Real Envoy config dumps (tests/golden, made by scripts/make_golden_dumps.py) against the
listeners a person read out of them (expected.json), through `status --from-file`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from kubectl_keepalive.cli.main import main

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


def _status(case: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    expected = json.loads((GOLDEN / case / "expected.json").read_text())
    code = main(["status", "--from-file", str(GOLDEN / case / expected["input"]), *args], out,
                err, None, {})
    assert code == 0, err.getvalue()
    return out.getvalue(), err.getvalue()


def test_so_keepalive_alone_shows_the_kernel_timers_and_says_so() -> None:
    table, notes = _status("ingressgateway-8080-on-no-timers", "-o", "wide")
    (row,) = [line for line in table.splitlines() if " 8080 " in line]
    assert "on 7200s/75s/x9 (kernel defaults)" in row
    assert "unless the pod's sysctls differ" in notes


def test_other_encodings_in_the_table_and_notes() -> None:
    table, notes = _status("tcp-keepalive", "-o", "wide")
    assert "on 60s/10s/x3" in table and "on 45s/75s/x9 (kernel default interval, probes)" in table
    assert "socket_options last, so they win" in notes
    table, notes = _status("additional-addresses", "-o", "wide")
    assert "on 60s/10s/x3 +2 addr" in table
    assert "additional address 127.0.0.3:8080: keepalive off" in notes
    assert "additional address 127.0.0.2:8443: keepalive on 200s/75s/x9" in notes
    _table, notes = _status("helm-80-443-quic")
    assert "UDP listener" not in notes  # the QUIC listener carries no TCP options
