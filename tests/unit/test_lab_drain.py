"""The lab's pods drain for what pilot-agent would pass them (lab/pod_wiring.py), so that the
plugin's reading of drain times is checked against what really happens in the cluster tier."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

import pod_wiring


@pytest.mark.parametrize(
    ("proxy_config", "seconds"),
    [("drainDuration: 5s", 5), ('{"drainDuration": "1m"}', 60), ("drainDuration: 500ms", 1),
     ("drainDuration: 90", 90), ("terminationDrainDuration: 9s\ndrainDuration: 7s", 7),
     ("terminationDrainDuration: 9s", None), ("", None)],
)
def test_drain_duration_as_pilot_agent_passes_it(proxy_config: str, seconds: int | None) -> None:
    assert pod_wiring.drain_duration_s(proxy_config) == seconds
