"""Two revisions of the plugin side by side on the lab: one-pod `status`, `diff` and `doctor`,
and `istioctl proxy-config listener` on the same pod, interleaved in one run.

Each revision is exported with `git archive` and pip-installed into a throwaway venv of one
python3, so both run as a user would run them; every round runs every case once, so drift in
the machine's load hits all of them alike. The answer to "did this change make it faster?"
without trusting numbers taken on another day.

Run: `python3 benchmarks/compare.py --kubeconfig "$(bash lab/cluster-up.sh)" OLD [NEW]`
(NEW defaults to the work tree), under the lab lock as `make bench-*` does.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import benchlib
from startup import copy_tree, install

COMMANDS = (("status", []), ("diff", []), ("doctor", ["--duration", "10m"]))


def package_root(revision: str) -> str:
    """Where `revision` keeps the package: `kubectl_keepalive/` at the top since the layout
    move, `src/` before it."""
    listed = subprocess.run(["git", "-C", str(benchlib.REPO), "ls-tree", "--name-only", revision],
                            capture_output=True, check=True, text=True, timeout=60).stdout
    return "kubectl_keepalive" if "kubectl_keepalive" in listed.split() else "src"


def export(revision: str, into: Path) -> Path:
    """The package sources of `revision`, as `git archive` gives them."""
    archive = subprocess.run(["git", "-C", str(benchlib.REPO), "archive", revision,
                              package_root(revision), "setup.cfg", "pyproject.toml", "README.md",
                              "LICENSE"],
                             capture_output=True, check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True, help="the lab's kubeconfig")
    parser.add_argument("--runs", type=int, default=25, help="rounds (default 25)")
    parser.add_argument("--python", default=sys.executable, help="the python3 to install into")
    parser.add_argument("old", help="a git revision")
    parser.add_argument("new", nargs="?", help="a git revision (default: the work tree)")
    args = parser.parse_args()
    env = benchlib.clean_env()
    one = benchlib.status_args(args.kubeconfig)[1:]
    labels = [args.old, args.new or "work tree"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sources = [export(args.old, tmp / "old"),
                   export(args.new, tmp / "new") if args.new else copy_tree(tmp / "new")]
        plugins = [install(args.python, tmp / f"venv{i}", source)
                   for i, source in enumerate(sources)]
        cases: list[benchlib.Case] = [([str(plugin), name, *extra, *one], env)
                                      for name, extra in COMMANDS for plugin in plugins]
        pod = benchlib.one_pod(args.kubeconfig)
        cases.append((benchlib.istioctl_listener(args.kubeconfig, pod), env))
        medians = benchlib.interleaved_medians(cases, args.runs)
    istioctl = medians[-1]
    print(f"median of {args.runs} interleaved runs after one warm-up "
          f"(`{' '.join(sys.argv)}`), python {args.python}\n")
    print(f"| one-pod command | {labels[0]} | {labels[1]} | change |")
    print("|---|---|---|---|")
    for row, (name, _) in enumerate(COMMANDS):
        old, new = medians[2 * row], medians[2 * row + 1]
        print(f"| `{name}` | {old:.0f} ms ({old / istioctl:.2f}x) | {new:.0f} ms "
              f"({new / istioctl:.2f}x) | {100 * (new - old) / old:+.0f}% |")
    print(f"| `istioctl proxy-config listener` | {istioctl:.0f} ms | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
