"""Start-up of the pip-installed plugin under each python3: `--help`, `version`, `completion`,
`status --from-file` on a golden dump and, with `--kubeconfig` (the lab), one-pod `status`, `diff`
and `doctor` against `istioctl proxy-config listener` on the same pod.

For each interpreter (pyenv's 3.9 to 3.13 and the system python3) a throwaway venv gets
`pip install` of a copy of the work tree, as a user would install it. Every command of every
interpreter runs once per round, RUNS rounds after one warm-up each (so bytecode is cached, as
after any install), and the table shows medians: targets 60 ms for `--help`, `version` and
`completion`, 120 ms for `status --from-file`, and at most 2x istioctl for one pod.

Run: `make bench` (no lab), or
`python3 benchmarks/startup.py --kubeconfig "$(bash lab/cluster-up.sh)"` under the lab lock.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib

COPIED = ("kubectl_keepalive", "setup.cfg", "pyproject.toml", "README.md", "LICENSE")


def install(python: str, into: Path, source: Path) -> Path:
    """A venv with the plugin pip-installed from `source`; returns its kubectl-keepalive."""
    subprocess.run([python, "-m", "venv", str(into)], check=True, timeout=300)
    subprocess.run([str(into / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(source)], check=True, timeout=900,
                   env=benchlib.clean_env())
    return into / "bin" / "kubectl-keepalive"


def copy_tree(into: Path) -> Path:
    """The work tree's package sources, so that the build leaves nothing in the repository."""
    for name in COPIED:
        source = benchlib.REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, into / name)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", help="the lab's kubeconfig: adds the one-pod rows")
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--python", action="append",
                        help="only these interpreters (paths); default: every one found")
    args = parser.parse_args()
    pythons = ([(p, p) for p in args.python] if args.python else benchlib.interpreters())
    env = benchlib.clean_env()
    commands: list[tuple[str, list[str]]] = [
        ("`--help`", ["--help"]),
        ("`version`", ["version"]),
        ("`completion`", ["completion"]),
        ("`status --from-file` (golden dump)", ["status", "--from-file",
                                                str(benchlib.GOLDEN)]),
    ]
    reference: list[str] | None = None
    if args.kubeconfig:
        pod = benchlib.one_pod(args.kubeconfig)
        one = benchlib.status_args(args.kubeconfig)
        commands += [
            ("one-pod `status`", one),
            ("one-pod `diff`", ["diff", *one[1:]]),
            ("one-pod `doctor --duration 10m`", ["doctor", "--duration", "10m", *one[1:]]),
        ]
        reference = benchlib.istioctl_listener(args.kubeconfig, pod)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = copy_tree(tmp / "source")
        plugins = [install(path, tmp / f"venv{i}", source) for i, (_, path) in
                   enumerate(pythons)]
        cases: list[benchlib.Case] = [([str(plugin), *argv], env) for _, argv in commands
                                      for plugin in plugins]
        if reference:
            cases.append((reference, env))
        medians = benchlib.interleaved_medians(cases, args.runs)
    width = len(pythons)
    print(f"pip-installed, median of {args.runs} interleaved runs after one warm-up "
          f"(`{' '.join(sys.argv)}`)\n")
    print("| command | " + " | ".join(f"python {label}" for label, _ in pythons) + " |")
    print("|---|" + "---|" * width)
    for row, (label, _) in enumerate(commands):
        cells = medians[row * width:(row + 1) * width]
        print(f"| {label} | " + " | ".join(f"{ms:.0f} ms" for ms in cells) + " |")
    if reference:
        istioctl = medians[-1]
        print(f"| `istioctl proxy-config listener`, same pod | {istioctl:.0f} ms "
              + "| " * (width - 1) + "|")
        for row in range(len(commands) - 3, len(commands)):  # the one-pod rows
            ratios = medians[row * width:(row + 1) * width]
            name = commands[row][0].replace("one-pod ", "").split(" --")[0].rstrip("`") + "`"
            print(f"| one-pod {name} / istioctl | "
                  + " | ".join(f"{ms / istioctl:.1f}x" for ms in ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
