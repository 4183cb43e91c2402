"""Property tests of the CLI contract over generated argv (FakeCluster, a fake: nothing real).

Every input ends with an exit code from docs/exit-codes.md, no traceback, and within a time
bound; inputs that must be refused before contact exit 2 with exactly one `error:` line, nothing
on stdout, and the cluster never built.
"""

from __future__ import annotations

import argparse
import io
import re
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_keepalive.cli.main import build_parser, main
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kube.labelselector import parse as parse_selector
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import KUBECONFIG, ingress

EXIT_CODES = {0, 1, 2, 3, 4, 5, 130}
TIME_BOUND_S = 10.0
SUBCOMMANDS = ["status", "diff", "enable", "disable", "doctor", "version", "completion"]
# Flags whose values name files or folders: drawn from safe values only, never a random path
# that might exist (a generated `--install .` would write into the working tree).
PATH_FLAGS = {"--kubeconfig", "--from-file", "--install", "--certificate-authority",
              "--client-certificate", "--client-key"}
SKIP_FLAGS = {"-h", "--help"}

_JUNK = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "-", "--", "²", "٣", "9" * 5000, "1.5s", "0", "-1", "a b=c d",
                     "Bad_NS", "app==gw", "!x", "x in (a,b)", "1h30m", "70000", "15021", "\x00",
                     "..", "true", "false", "=", "--v=2"]),
)
_GOOD = st.sampled_from(["istio-system", "app=istio-ingressgateway", "8080", "1s", "2s", "5",
                         "client", "server", "json", "yaml", "wide", "table", "10m", "lab"])
VALUE_FLAGS: dict[str, bool] = {}  # option string -> takes a value, from the real parser
_TOP = build_parser()
_SUBS = next(a for a in _TOP._actions if isinstance(a, argparse._SubParsersAction)).choices
for _parser in [_TOP, *_SUBS.values()]:
    for _action in _parser._actions:
        for _option in _action.option_strings:
            if _option not in SKIP_FLAGS:
                VALUE_FLAGS[_option] = _action.nargs != 0


@st.composite
def argv_words(draw: st.DrawFn, paths: dict[str, str]) -> list[str]:
    words: list[str] = []
    command = draw(st.sampled_from([*SUBCOMMANDS, "frobnicate", None]))
    for _ in range(draw(st.integers(0, 6))):
        flag = draw(st.sampled_from(sorted(VALUE_FLAGS)))
        if flag in PATH_FLAGS:
            value = draw(st.sampled_from(sorted(paths.values())))
        else:
            value = draw(st.one_of(_GOOD, _JUNK))
        if VALUE_FLAGS[flag]:
            words += draw(st.sampled_from([[flag, value], [f"{flag}={value}"]]))
        else:
            words.append(flag)
    if draw(st.booleans()):
        words.append(draw(_JUNK))
    if command is not None:
        words.insert(draw(st.integers(0, len(words))), command)
    if command in ("enable", "disable") and draw(st.booleans()):
        words.append("-y")
    return [w for w in words if w not in ("-h", "--help", "__complete")][:20]


class Recorder:
    def __init__(self) -> None:
        self.built = False

    def __call__(self, _: Any) -> FakeCluster:
        self.built = True
        return FakeCluster(ingress())


def run(argv: list[str], kubeconfig: Path) -> tuple[int, str, str, bool, float]:
    out, err = io.StringIO(), io.StringIO()
    factory = Recorder()
    started = time.monotonic()
    try:
        code = main(argv, out, err, factory, {"KUBECONFIG": str(kubeconfig)}, io.StringIO(""))
    except SystemExit as exc:  # argparse's --help; generated argv never asks for it
        raise AssertionError(f"{argv!r} exited through SystemExit({exc.code})") from None
    return code, out.getvalue(), err.getvalue(), factory.built, time.monotonic() - started


def check_contract(argv: list[str], code: int, out: str, err: str, elapsed: float) -> None:
    assert code in EXIT_CODES, (argv, code, err)
    assert code != 5, f"internal error for {argv!r}: {err}"
    assert "Traceback" not in err, (argv, err)
    assert elapsed < TIME_BOUND_S, (argv, elapsed)
    if code == 2:
        assert out == "", (argv, out)
        # One line: the user's value may itself contain "error:", never a line break.
        assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), (
            argv, err)


@given(data=st.data())
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_any_argv_ends_with_a_documented_exit_code(data: st.DataObject, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    paths = {"missing": str(tmp_path / "missing" / "x"), "stdin": "-",
             "kubeconfig": str(kubeconfig), "nul": "a\x00b", "dir": str(tmp_path / "out")}
    (tmp_path / "out").mkdir(exist_ok=True)
    argv = data.draw(argv_words(paths))
    code, out, err, _, elapsed = run(argv, kubeconfig)
    check_contract(argv, code, out, err, elapsed)


def _bad_value_argv() -> st.SearchStrategy[list[str]]:
    bad_namespace = st.text(max_size=20).filter(
        lambda t: len(t) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", t, re.ASCII))
    bad_duration = st.text(max_size=20).filter(
        lambda t: not re.fullmatch(r"[0-9]{1,4}[hms]?", t.strip(" \t"), re.ASCII))

    def selector_refused(text: str) -> bool:
        try:
            parse_selector(text)
        except UsageError:
            return True
        return False

    return st.one_of(
        st.builds(lambda v, c: ["-n", v, c], bad_namespace,
                  st.sampled_from(["status", "diff", "enable", "doctor"])),
        st.builds(lambda v: ["status", "-l", v], st.text(max_size=20).filter(selector_refused)),
        st.builds(lambda v: ["enable", "-y", "--idle", v], bad_duration),
        st.builds(lambda v: ["doctor", "--duration", v], bad_duration),
        st.builds(lambda v: ["enable", "-y", "--port", v], st.one_of(
            st.integers(min_value=65536).map(str), st.integers(max_value=0).map(str),
            st.text(max_size=8).filter(lambda t: not re.fullmatch(r"[0-9]+", t, re.ASCII)))),
    )


@given(argv=_bad_value_argv())
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bad_values_are_refused_before_contact(argv: list[str], tmp_path: Path) -> None:
    if argv[0] == "-n" and argv[1].startswith("-"):
        argv = [f"--namespace={argv[1]}", argv[2]]  # argparse would read it as a flag
    elif argv[-2].startswith("-") and argv[-1].startswith("-"):
        argv = [*argv[:-2], f"{argv[-2]}={argv[-1]}"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    code, out, err, built, elapsed = run(argv, kubeconfig)
    check_contract(argv, code, out, err, elapsed)
    assert code == 2, (argv, code, err)
    assert not built, f"{argv!r} contacted the cluster"


@given(namespace=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
       selector=st.sampled_from(["app=istio-ingressgateway", "app==istio-ingressgateway",
                                 "istio", "istio in (ingressgateway)", "!missing,istio"]))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_valid_names_and_selectors_reach_the_cluster(namespace: str, selector: str,
                                                     tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    code, _, err, built, _ = run(["status", "-n", namespace, "-l", selector], kubeconfig)
    assert code == 0 and built, (namespace, selector, err)
