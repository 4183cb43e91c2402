"""The python3 interpreters a user may have, as this machine kind has them: pyenv's 3.9 (macOS's
python3) to 3.13. Shared by the krew tier and the start-up benchmarks."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

MINORS = (9, 10, 11, 12, 13)


def pyenv_python(minor: int) -> str | None:
    """The newest pyenv 3.<minor>.x python3, or None when pyenv has none."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
        root = done.stdout.strip() or root
    found = sorted(glob.glob(os.path.join(root, "versions", f"3.{minor}.*", "bin", "python3")),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/")[-3])])
    return found[-1] if found else None
