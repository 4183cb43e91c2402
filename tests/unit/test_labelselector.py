"""labelselector: kubectl's selector grammar and the server's key/value rules, as data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kube import labelselector
from kubectl_keepalive.kube.labelselector import Requirement, canonical, equality_labels, parse


@pytest.mark.parametrize(
    ("text", "requirements"),
    [
        ("app=gw", [Requirement("app", "=", ("gw",))]),
        ("app==gw", [Requirement("app", "==", ("gw",))]),
        ("app!=gw", [Requirement("app", "!=", ("gw",))]),
        ("app", [Requirement("app", "exists")]),
        ("!app", [Requirement("app", "!")]),
        (" app in (a, b) ", [Requirement("app", "in", ("a", "b"))]),
        ("app notin (a)", [Requirement("app", "notin", ("a",))]),
        ("app in ()", [Requirement("app", "in", ("",))]),  # the server reads () as ("")
        ("app in (a,,b)", [Requirement("app", "in", ("a", "", "b"))]),
        ("app=", [Requirement("app", "=", ("",))]),
        ("gen>3", [Requirement("gen", ">", ("3",))]),
        ("x=in", [Requirement("x", "=", ("in",))]),  # keywords are values after an operator
        ("istio.io/rev=1-31,gateway.networking.k8s.io/gateway-name=gw",
         [Requirement("istio.io/rev", "=", ("1-31",)),
          Requirement("gateway.networking.k8s.io/gateway-name", "=", ("gw",))]),
        ("", []),
    ],
)
def test_parses_kubectl_syntax(text: str, requirements: list[Requirement]) -> None:
    assert parse(text) == requirements


@pytest.mark.parametrize(
    "text",
    [
        "a b=c d",  # the example: spaces inside a key
        "Bad Key=x",
        "a=b c",
        "a=(b)",
        "app in (a",
        "app in a",
        "!app=x",
        "a,,b",
        "a=b,",
        "=b",
        "a/b/c=d",
        "Upper.Prefix/name=x",
        "a=" + "v" * 64,
        "k" * 64 + "=v",
        "a=-leading",
        "a=b!",
        "gen>x",
        "gen<-1",
    ],
)
def test_refuses_what_the_server_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="invalid label selector"):
        parse(text)


def test_canonical_form_and_equality_labels() -> None:
    assert canonical("app==gw , istio = ingressgateway") == "app=gw,istio=ingressgateway"
    assert canonical("app in (b,a),!x") == "app in (a,b),!x"
    assert equality_labels("app==gw,istio=ingressgateway") == {
        "app": "gw", "istio": "ingressgateway"}
    assert equality_labels("app=gw,app=other") is None
    assert equality_labels("app=gw,tier in (a)") is None
    assert equality_labels("app") is None
    assert equality_labels("") is None


_NAME = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True)
_KEY = st.one_of(_NAME, st.builds(lambda p, n: f"{p}.io/{n}", _NAME.filter(
    lambda s: "_" not in s and ".." not in s and not s.startswith(".")
    and ".-" not in s and "-." not in s), _NAME))
_VALUE = st.one_of(st.just(""), _NAME)


@st.composite
def requirement_text(draw: st.DrawFn) -> str:
    key = draw(_KEY)
    kind = draw(st.sampled_from(["=", "==", "!=", "exists", "!", "in", "notin"]))
    if kind == "exists":
        return key
    if kind == "!":
        return f"!{key}"
    if kind in ("in", "notin"):
        values = draw(st.lists(_NAME, min_size=1, max_size=3))
        return f"{key} {kind} ({', '.join(values)})"
    return f"{key}{kind}{draw(_VALUE)}"


@given(st.lists(requirement_text(), min_size=1, max_size=4))
def test_generated_selectors_parse_and_survive_their_canonical_form(terms: list[str]) -> None:
    text = ",".join(terms)
    once = canonical(text)
    assert canonical(once) == once
    assert len(parse(once)) == len(terms)


@given(st.text(max_size=40))
def test_any_text_is_parsed_or_refused_with_a_usage_error(text: str) -> None:
    try:
        requirements = parse(text)
    except UsageError as exc:
        assert "\n" not in str(exc).replace(repr(text), "")
        return
    for req in requirements:
        assert req.key.isascii() and " " not in req.key
        assert all(v.isascii() and len(v) <= 63 for v in req.values)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [("app=gw", True), ("app==gw", True), ("app!=gw", False), ("app in (gw,x)", True),
     ("app notin (gw)", False), ("istio", True), ("!istio", False), ("!absent", True),
     ("n>3", True), ("n<3", False), ("app=gw,istio=other", False), ("absent!=x", True)],
)
def test_matches_as_the_api_server_decides(selector: str, expected: bool) -> None:
    labels = {"app": "gw", "istio": "ingress", "n": "5"}
    assert labelselector.matches(selector, labels) is expected
