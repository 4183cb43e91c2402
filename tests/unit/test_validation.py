"""validation: every flag value checked before contact, one UsageError line each."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_keepalive.cli import validation
from kubectl_keepalive.cli.main import build_parser, normalize_argv
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags


def checked(*argv: str) -> argparse.Namespace:
    return validation.check(build_parser().parse_args(normalize_argv(argv)))


@pytest.mark.parametrize("name", ["istio-system", "a", "a1-b2", "x" * 63])
def test_namespaces_that_are_dns_labels_pass(name: str) -> None:
    assert validation.namespace(name, "-n") == name


@pytest.mark.parametrize("name", ["Bad_NS", "-a", "a-", "a.b", "", "x" * 64, "ns\n",
                                  "../../apis/apps/v1/namespaces/kube-system/deployments?x=",
                                  "\u0131stio"])
def test_namespaces_that_are_not_dns_labels_fail_naming_the_flag(name: str) -> None:
    with pytest.raises(UsageError, match="--istio-namespace"):
        validation.namespace(name, "--istio-namespace")


def test_object_names_are_dns_subdomains() -> None:
    assert validation.object_name("istio-ingressgateway.v2", "--gateway")
    for bad in ("Bad Name!", "a..b", "x" * 254, ""):
        with pytest.raises(UsageError, match="--gateway"):
            validation.object_name(bad, "--gateway")


@pytest.mark.parametrize(("text", "ok"), [("1", True), ("65535", True), ("0", False),
                                          ("65536", False), ("٣", False), ("1_0", False),
                                          (" 5", False), ("9" * 5000, False), ("15000", False)])
def test_ports_are_ascii_digits_in_range_and_not_bootstrap(text: str, ok: bool) -> None:
    if ok:
        assert validation.port(text) == int(text)
    else:
        with pytest.raises(UsageError, match="--port"):
            validation.port(text)


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("30", 30.0), ("30s", 30.0),
                                               ("1m", 60.0), ("1.5s", 1.5), ("500ms", 0.5),
                                               ("1h2m", 3720.0)])
def test_request_timeout_takes_kubectl_syntax(text: str, seconds: float) -> None:
    assert validation.request_timeout(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "x", "-1s", "1d", "²", "1" * 5000])
def test_request_timeout_refuses_the_rest(text: str) -> None:
    with pytest.raises(UsageError, match="--request-timeout"):
        validation.request_timeout(text)


def test_check_normalises_what_the_commands_use() -> None:
    args = checked("-v", "enable", "-l", "app==gw", "--port", "8443", "--port", "80",
                   "--port", "80", "--probes", "5", "-y")
    assert args.selector == "app=gw"
    assert args.port == [80, 8443]
    assert args.probes == 5
    assert args.verbose == 1


@pytest.mark.parametrize(("argv", "level"), [(["-v", "6", "status"], 6),
                                             (["-v=6", "status"], 6),
                                             (["--v=6", "status"], 6),
                                             (["status", "-v6"], 6),
                                             (["status", "-v"], 1),
                                             (["status"], 0)])
def test_verbosity_is_taken_as_kubectl_takes_it(argv: list[str], level: int) -> None:
    args = checked(*argv)
    assert (args.command, args.verbose) == ("status", level)


def test_connection_flags_before_and_after_the_subcommand() -> None:
    args = checked("--as", "jane", "--as-group", "dev", "--token", "abc", "-s",
                   "https://10.0.0.1:6443", "status", "--as-group", "ops", "--as-uid", "42",
                   "--user", "u", "--cluster", "c", "--certificate-authority", "ca.crt",
                   "--client-certificate", "c.crt", "--client-key", "c.key",
                   "--insecure-skip-tls-verify=true", "--tls-server-name", "api",
                   "--request-timeout", "2s", "--context", "lab", "--kubeconfig", "kc")
    assert args.connection == ConnectionFlags(
        kubeconfig="kc", context="lab", cluster="c", user="u", server="https://10.0.0.1:6443",
        token="abc", as_user="jane", as_groups=("dev", "ops"), as_uid="42",
        certificate_authority="ca.crt", client_certificate="c.crt", client_key="c.key",
        insecure_skip_tls_verify=True, tls_server_name="api", request_timeout=2.0)
    assert checked("status").connection == ConnectionFlags()
    assert checked("status", "--insecure-skip-tls-verify=false").connection == ConnectionFlags()


@pytest.mark.parametrize("argv", [["status", "--token", "a\nInjected: x"],
                                  ["status", "--as", ""],
                                  ["status", "--kubeconfig", "a\x00b"],
                                  ["status", "-s", "https://a b"],
                                  ["status", "-v", "99"],
                                  ["enable", "--idle", "0"],
                                  ["enable", "--interval", "32768"],
                                  ["enable", "--revision", "bad rev"],
                                  ["doctor", "--duration", "1000000h"]])
def test_check_refuses_bad_values(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        checked(*argv)


@given(st.text(max_size=80))
def test_any_namespace_text_is_accepted_exactly_when_it_is_a_dns_label(text: str) -> None:
    import re

    is_label = (len(text) <= 63
                and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text, re.ASCII) is not None)
    try:
        validation.namespace(text, "-n")
    except UsageError:
        assert not is_label
    else:
        assert is_label
