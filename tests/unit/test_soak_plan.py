"""The soak's plan (tests/soak/plan.py) is a pure function of its seed: replayable, and a
shorter plan is the start of a longer one, so a failure at step K replays with K steps."""

from __future__ import annotations

from tests.soak.plan import ACTIONS, FAULTS, TARGETS, make_plan


def test_the_same_seed_gives_the_same_plan_and_a_prefix_replays_it() -> None:
    long = make_plan(7, 60)
    assert make_plan(7, 60) == long
    assert make_plan(7, 13) == long[:13]
    assert make_plan(8, 60) != long


def test_a_long_plan_covers_every_action_fault_and_target_within_their_ranges() -> None:
    plan = make_plan(24, 400)
    assert {s.action for s in plan} == {a for a, _ in ACTIONS}
    assert {s.fault for s in plan} == {None, *FAULTS}
    assert {s.target for s in plan} == set(TARGETS)
    for step in plan:
        assert step.fault is None or step.action in ("enable", "disable"), step
        assert 1 <= step.replicas <= 3 and step.timeout in (60, 90, 120)
        assert 5 <= step.settings.idle <= 121 and 1 <= step.settings.probes <= 9
        if step.fault == "freeze-apiserver":
            assert 5 <= step.fault_seconds <= 20
        if step.action == "race":
            assert step.rival is not None and step.rival != step.settings
    assert [s.index for s in plan] == list(range(400))
