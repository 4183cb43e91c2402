"""Suite-wide rule: under CI (CI=true) a skipped test is a failed test.

Tiers skip themselves on a developer's machine when a real component (Envoy, root, the lab
cluster, krew) is missing; in CI a missing component must fail the run, never hide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Lab

REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The lab cluster (lab/cluster-up.sh reuses a running one), shared by every tier that needs
    it (cluster, krew) and torn down once, after the session, unless KEEPALIVE_KEEP_LAB=1."""
    if not shutil.which("go"):
        pytest.skip("Go is needed to build the lab's control plane")
    up = subprocess.run(["bash", str(REPO / "lab" / "cluster-up.sh")], capture_output=True,
                        text=True, timeout=3600)
    if up.returncode != 0:
        pytest.fail(f"lab/cluster-up.sh failed ({up.returncode}):\n{up.stderr[-4000:]}")
    lab = Lab(up.stdout.strip().splitlines()[-1])
    lab.reset()
    yield lab
    lab.reset()
    # The lab's namespaces, routes and processes go with the session, unless asked to stay
    # (a developer re-running one test saves the 12 s start).
    if os.environ.get("KEEPALIVE_KEEP_LAB") != "1":
        subprocess.run(["bash", str(REPO / "lab" / "cluster-down.sh")], capture_output=True,
                       text=True, timeout=300, check=True)
