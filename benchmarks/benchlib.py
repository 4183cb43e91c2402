"""Shared by the start-up benchmarks: the python3 interpreters to try, interleaved medians, and
the lab's one-pod reference (`istioctl proxy-config listener` on the same pod)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the interpreter list is shared with the krew tier

from tests.support.interpreters import MINORS, pyenv_python  # noqa: E402

GOLDEN = REPO / "tests" / "golden" / "ingressgateway-8080-on" / "config_dump.json"
NAMESPACE = "istio-system"
ONE_POD_SELECTOR = "app=istio-ingressgateway"  # the lab seeds it with one replica


def interpreters() -> list[tuple[str, str]]:
    """(label, path): pyenv's 3.9 to 3.13 and the system python3, those that exist."""
    found = []
    for minor in MINORS:
        path = pyenv_python(minor)
        if path:
            found.append((f"3.{minor}", path))
    if os.access("/usr/bin/python3", os.X_OK):
        version = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % "
                                  "sys.version_info[:2])"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
        found.append((f"system {version}", "/usr/bin/python3"))
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without what would make Python slower than a user's: no
    PYTHONDONTWRITEBYTECODE (bytecode is cached, as for any install)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra)
    return env


Case = tuple[Sequence[str], Mapping[str, str]]


def once_ms(argv: Sequence[str], env: Mapping[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, env=dict(env), timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    # `diff` exits 1 when enable would change something, `doctor` 1 when a timer cuts and 6
    # when it cannot tell (the lab's Service names no balancer): answers, not failures.
    answers = {"diff": (0, 1), "doctor": (0, 1, 6)}
    allowed = next((codes for word, codes in answers.items() if word in argv), (0,))
    if done.returncode not in allowed:
        raise SystemExit(f"error: {' '.join(argv)} exited {done.returncode}: "
                         f"{done.stderr.decode(errors='replace')[-800:]}")
    return elapsed


def interleaved_medians(cases: Sequence[Case], runs: int) -> list[float]:
    """Median ms of each case; one warm-up each, then `runs` rounds that run every case once,
    so that drift in the machine's load hits all of them alike."""
    for argv, env in cases:
        once_ms(argv, env)
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for i, (argv, env) in enumerate(cases):
            samples[i].append(once_ms(argv, env))
    return [statistics.median(s) for s in samples]


def lab_binary(prefix: str) -> str:
    cache = Path(os.environ.get("KEEPALIVE_CACHE") or os.path.expanduser(
        "~/.cache/kubectl-keepalive")) / "bin"
    found = sorted(cache.glob(f"{prefix}*"))
    if not found:
        raise SystemExit(f"error: no {prefix}* in {cache} (lab/build-binaries.sh)")
    return str(found[-1])


def one_pod(kubeconfig: str) -> str:
    """The single pod of the lab's istio-ingressgateway."""
    names = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "pods", "-n", NAMESPACE,
                            "-l", ONE_POD_SELECTOR, "-o", "name"], capture_output=True, text=True,
                           check=True, timeout=60).stdout.split()
    if len(names) != 1:
        raise SystemExit(f"error: expected one {ONE_POD_SELECTOR} pod, found {names}")
    return names[0].split("/", 1)[1]


def istioctl_listener(kubeconfig: str, pod: str) -> list[str]:
    return [lab_binary("istioctl-"), "--kubeconfig", kubeconfig, "proxy-config", "listener",
            pod, "-n", NAMESPACE]


def status_args(kubeconfig: str) -> list[str]:
    return ["status", "--kubeconfig", kubeconfig, "-n", NAMESPACE, "-l", ONE_POD_SELECTOR]
