"""`--help` of the plugin and of every command has an Examples section (as kubectl's help), and
every example is a command line the plugin's own parser and flag checks accept."""

from __future__ import annotations

import argparse
import shlex

import pytest

from kubectl_keepalive.cli import examples, validation
from kubectl_keepalive.cli.main import build_parser, normalize_argv

WIDTH = 100


def _subcommands() -> list[str]:
    parser = build_parser()
    (subs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(subs.choices)


def _commands(text: str) -> list[list[str]]:
    """The `kubectl keepalive ...` lines of an Examples text, continuations joined."""
    lines = text.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[2:] for line in lines if line.strip().startswith("kubectl ")]


def test_every_command_has_examples() -> None:
    missing = [c for c in _subcommands() if c not in examples.COMMANDS]
    assert not missing, f"add examples for {missing} to kubectl_keepalive/cli/examples.py"


# Examples may be written before their command lands in the parser: those wait for it.
WITH_EXAMPLES = [c for c in examples.COMMANDS if c in _subcommands()]


@pytest.mark.parametrize("command", [None, *WITH_EXAMPLES])
def test_help_shows_the_examples_before_the_flags_and_the_exit_codes(
        command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command] if command else []
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    shown = examples.COMMANDS[command] if command else examples.PLUGIN
    assert "Examples:\n" + shown in text
    # The flags come after ("options:", "optional arguments:" before python 3.10).
    assert text.index("Examples:") < text.index("  -h, --help") < text.index("exit codes:")


@pytest.mark.parametrize("argv", [argv for text in [examples.PLUGIN, *(
    examples.COMMANDS[c] for c in WITH_EXAMPLES)] for argv in _commands(text)], ids=" ".join)
def test_every_example_is_accepted_by_the_parser_and_the_flag_checks(argv: list[str]) -> None:
    parsed = build_parser().parse_args(normalize_argv(argv))
    validation.check(parsed)  # raises UsageError (exit 2) on a value the plugin refuses


def test_examples_fit_a_terminal() -> None:
    for text in [examples.PLUGIN, *examples.COMMANDS.values()]:
        wide = [line for line in text.splitlines() if len(line) > WIDTH]
        assert not wide, wide
