#!/usr/bin/env bash
# The unit tier again under the oldest python3 the plugin supports (pyenv's 3.9), so that
# nothing newer than 3.9 slips into the code paths the tests reach (ruff's py39 target checks
# only the syntax). Its own venv, .venv-oldest, with requirements/oldest.txt and the plugin
# installed editable (its entry point on PATH for the completion tests; kubectl comes from the
# main venv, which `make test` makes first). Under CI=true a missing 3.9 fails the run;
# elsewhere it is skipped with a line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${PYENV_ROOT:-$HOME/.pyenv}"
if command -v pyenv >/dev/null; then root="$(pyenv root)"; fi
python="$(ls -d "$root"/versions/3.9.*/bin/python3 2>/dev/null | sort -V | tail -1 || true)"
if [[ -z "$python" ]]; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "unit-oldest: no pyenv python 3.9 under $root" >&2
    exit 1
  fi
  echo "unit-oldest: skipped, no pyenv python 3.9 under $root" >&2
  exit 0
fi
venv=.venv-oldest
stamp="$venv/.installed"
if [[ ! -f "$stamp" || requirements/oldest.txt -nt "$stamp" || setup.cfg -nt "$stamp" ]]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements/oldest.txt \
    -e .
  touch "$stamp"
fi
# The plugin's entry point from this venv; kubectl (for the completion test) from the main one.
PATH="$PWD/$venv/bin:$PWD/.venv/bin:$PATH" "$venv/bin/python" -m pytest tests/unit -q \
  -p no:cacheprovider
