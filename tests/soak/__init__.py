"""The soak tier: a seeded random plan of plugin commands and lab faults, checked after every
step (see plan.py for what a plan holds, runner.py for the invariants)."""
