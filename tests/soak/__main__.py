"""`python -m tests.soak --seed N --steps N [--first K] [--record FILE] [--kubeconfig FILE]`:
a long soak on the lab (`make soak SEED=... STEPS=...` runs it under the lab lock).

Exit 0 when every step kept the invariants, 1 at the first that did not (the record names it;
`--first K` replays the plan's first K steps), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.cluster.conftest import REPO, Lab
from tests.soak.plan import make_plan
from tests.soak.runner import Violation, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True, help="the plan's length")
    parser.add_argument("--first", type=int, default=None, metavar="K",
                        help="replay only the plan's first K steps")
    parser.add_argument("--record", type=Path, default=None,
                        help="the JSON-lines record (default: soak-SEED.jsonl in the temp dir)")
    parser.add_argument("--kubeconfig", default=None,
                        help="the lab's kubeconfig (default: what lab/cluster-up.sh prints)")
    args = parser.parse_args(argv)
    if args.steps < 1 or (args.first is not None and not 1 <= args.first <= args.steps):
        parser.error("--steps must be at least 1 and --first between 1 and --steps")
    plan = make_plan(args.seed, args.steps)[:args.first]
    record = args.record or Path(tempfile.gettempdir()) / f"soak-{args.seed}.jsonl"
    kubeconfig = args.kubeconfig or subprocess.run(
        ["bash", str(REPO / "lab" / "cluster-up.sh")], capture_output=True, text=True,
        check=True, timeout=3600).stdout.strip().splitlines()[-1]
    print(f"soak: seed {args.seed}, {len(plan)} step(s), record {record}", file=sys.stderr)
    try:
        done = run_soak(Lab(kubeconfig), plan, record, args.seed)
    except Violation as exc:
        print(f"soak: invariant broken at {exc}", file=sys.stderr)
        return 1
    print(f"soak: {done} step(s) kept every invariant; record {record}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
