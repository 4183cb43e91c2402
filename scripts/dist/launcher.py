# ruff: noqa: UP031, UP036  (this file must run, and say why it stops, on old pythons too)
"""Entry point of the krew archive's `kubectl-keepalive` (a zip application).

The user's python3 may have site-packages that shadow what the archive bundles (another
`yaml`, an old `kubernetes`, a `.pth` file importing things at start-up). So the first run
re-executes the same interpreter isolated from all of it (-I: no user site, no PYTHON*
variables; -S: no site-packages at all), and the archive alone supplies third-party code.
"""

import os
import sys

if sys.version_info < (3, 10):
    sys.stderr.write("error: kubectl-keepalive needs python3 >= 3.10, this is %d.%d\n"
                     % sys.version_info[:2])
    sys.exit(2)

ARCHIVE = os.path.dirname(os.path.abspath(__file__))

if not (sys.flags.isolated and sys.flags.no_site):
    os.execv(sys.executable, [sys.executable, "-I", "-S", ARCHIVE, *sys.argv[1:]])

if sys.path[0] != ARCHIVE:
    sys.path.insert(0, ARCHIVE)

from kubectl_keepalive.cli import entry_point  # noqa: E402

entry_point()
