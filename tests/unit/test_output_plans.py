"""Plans and the prompt fit a terminal: the warning before `Continue?` is two short lines."""

from __future__ import annotations

import io
from pathlib import Path

from kubectl_keepalive.cli.main import main
from tests.unit.test_output_golden import WIDTH, cli, env, one_gateway  # noqa: F401


class Terminal(io.StringIO):
    """A stdin that is a terminal, for the prompt."""

    def isatty(self) -> bool:
        return True


def test_the_prompt_warns_in_two_short_lines_and_no_changes_is_no(
        env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    fake = one_gateway()
    out, err = io.StringIO(), io.StringIO()
    code = main(["enable"], out, err, lambda _: fake, env, Terminal("n\n"))
    assert code == 1 and not fake.writes
    text = err.getvalue()
    start = text.index("warning: ")
    warning = text[start:text.index("Continue? [y/N]")].splitlines()
    assert len(warning) == 2 and all(len(line) <= WIDTH for line in warning), warning
    assert "8080, 8443" in warning[0] and "--when-quiet" in warning[1]
    assert "aborted: nothing was changed" in text


def test_verbose_says_where_each_timing_came_from(env: dict[str, str]) -> None:  # noqa: F811
    code, quiet, _ = cli(one_gateway(), env, "diff")
    code_v, loud, _ = cli(one_gateway(), env, "diff", "-v")
    assert code == code_v == 1
    assert "push drain 45s: Istio default" not in quiet and "note: no ConfigMap" in quiet
    assert "  push drain 45s: Istio default\n" in loud
    assert "  old pods end 5s into the rollout: terminationDrainDuration from Istio default\n" \
        in loud
