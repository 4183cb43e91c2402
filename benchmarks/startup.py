"""Start-up time: `kubectl-keepalive --help` and `kubectl keepalive version` through kubectl.

Median wall time of 20 runs after one warm-up, side by side with `kubectl version --client` (the
floor any kubectl plugin pays) in the same run. Target: under 300 ms. Run: `make bench`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

RUNS = 20


def median_ms(argv: list[str]) -> float:
    subprocess.run(argv, check=True, capture_output=True)  # warm-up: page cache, pyc files
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    plugin = shutil.which("kubectl-keepalive")
    kubectl = shutil.which("kubectl")
    if not plugin or not kubectl:
        print("error: kubectl-keepalive and kubectl must be on PATH (make venv)", file=sys.stderr)
        return 2
    rows = [
        ("kubectl-keepalive --help", median_ms([plugin, "--help"])),
        ("kubectl keepalive version", median_ms([kubectl, "keepalive", "version"])),
        ("kubectl version --client (floor)", median_ms([kubectl, "version", "--client"])),
    ]
    print(f"| command | median of {RUNS} runs |")
    print("|---|---|")
    for name, value in rows:
        print(f"| `{name}` | {value:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
