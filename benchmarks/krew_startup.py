"""Start-up of the krew-installed plugin: `kubectl keepalive --help`, median of 20 runs after
one warm-up, side by side with `kubectl version --client` in the same run; and the archive size.
Target: under 300 ms. Run: `make bench` (builds the archive and krew first)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = 20


def median_ms(argv: list[str], env: dict[str, str]) -> float:
    subprocess.run(argv, check=True, capture_output=True, env=env)
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    krew = Path(subprocess.run(["bash", str(REPO / "scripts" / "dist" / "build-krew.sh")],
                               check=True, capture_output=True, text=True).stdout.strip())
    kubectl = Path(sys.executable).parent / "kubectl"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run([sys.executable, str(REPO / "scripts" / "dist" / "build.py"), "--out",
                        str(tmp), "--manifest", str(tmp / "plugin.yaml"), "--template",
                        str(tmp / "krew-manifest.yaml")], check=True, capture_output=True)
        tools = tmp / "tools"
        tools.mkdir()
        shutil.copy(krew / "krew", tools / "kubectl-krew")
        shutil.copy(kubectl, tools / "kubectl")
        # The interpreter itself, not a version manager's shim script in front of it.
        python3 = Path(sys.base_prefix) / "bin" / "python3"
        env = {"HOME": str(tmp), "KREW_ROOT": str(tmp / "root"),
               "PATH": os.pathsep.join([str(tmp / "root" / "bin"), str(tools),
                                        str(Path(python3).parent), "/usr/bin", "/bin"])}
        subprocess.run(["kubectl", "krew", "install", f"--manifest={tmp / 'plugin.yaml'}",
                        f"--archive={tmp / 'kubectl-keepalive.tar.gz'}"], check=True,
                       capture_output=True, env=env)
        plugin = median_ms(["kubectl", "keepalive", "--help"], env)
        floor = median_ms(["kubectl", "version", "--client"], env)
        size = (tmp / "kubectl-keepalive.tar.gz").stat().st_size
    print(f"| krew-installed, median of {RUNS} | value |")
    print("|---|---|")
    print(f"| `kubectl keepalive --help` | {plugin:.0f} ms |")
    print(f"| `kubectl version --client` (floor) | {floor:.0f} ms |")
    print(f"| archive `kubectl-keepalive.tar.gz` | {size / 2**20:.1f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
