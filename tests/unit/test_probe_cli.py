"""`kubectl keepalive probe` through `main`: flags checked before any contact, `--url` without
a cluster, and the no-argument path over FakeCluster (a fake) with a real Envoy dump, whose
LoadBalancer address is a loopback server standing for the balancer."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import yaml

from kubectl_keepalive.cli.main import main
from tests.support.probe_servers import HoldServer
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import env, run  # noqa: F401  (env is a fixture)
from tests.unit.test_cli_doctor import NLB, gateway_with_dump, service


@pytest.mark.parametrize(("argv", "says"), [
    (["--url", "ftp://x/", "--hold", "1s"], "--url"),
    (["--url", "http://x/"], "--hold is required"),
    (["--url", "http://x/", "--hold", "0s"], "--hold"),
    (["--url", "http://x/", "--hold", "1s..5s"], "--connections 2 or more"),
    (["--url", "http://x/", "--hold", "1s", "--connections", "0"], "--connections"),
    (["--url", "http://x/", "--hold", "1s", "--answer-timeout", "0"], "--answer-timeout"),
    (["--url", "http://x/", "--hold", "1s", "--host", "a\r\nb"], "--host"),
    (["--url", "http://x/", "--hold", "1s", "--gateway", "gw"], "--url needs none"),
    (["--hold", "1s", "--gateway", "Not_A_Name"], "--gateway"),
    (["--url", "https://x/", "--hold", "1s", "--insecure-skip-tls-verify"], "--insecure-target"),
])
def test_bad_input_is_exit_2_before_any_contact(argv: list[str], says: str,
                                                env: dict[str, str]) -> None:  # noqa: F811
    code, out, err = run(None, env, "probe", *argv)
    assert code == 2 and out == "", err
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1


def test_url_needs_no_cluster_and_prints_the_table(env: dict[str, str]) -> None:  # noqa: F811
    with HoldServer("answer") as server:
        code, out, err = run(None, env, "probe", "--url",
                             f"http://127.0.0.1:{server.port}/", "--hold", "1s")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[0] == "TARGET" and row.split()[-1] == "survived"
    assert "silent for 1s (--hold)" in err


@pytest.mark.parametrize(("then", "code"), [("answer", 0), ("close", 4), ("silent", 4)])
def test_spread_holds_and_the_exit_code(then: str, code: int,
                                        env: dict[str, str]) -> None:  # noqa: F811
    with HoldServer(then) as server:
        got, out, err = run(None, env, "probe", "--url", f"http://127.0.0.1:{server.port}/",
                            "--hold", "1s..2s", "--connections", "3", "--answer-timeout", "1",
                            "-o", "json")
    assert got == code, err
    document = json.loads(out)
    assert [r["hold_seconds"] for r in document["results"]] == [1, 1.5, 2]
    assert document["exit_code"] == code


def _fronted(port: int, annotations: dict[str, str]) -> FakeCluster:
    fake = FakeCluster(gateway_with_dump())
    front: dict[str, Any] = service(annotations)
    front["spec"]["ports"][0]["port"] = port
    front["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
    fake.services = [front]
    return fake


DECLARED = {"keepalive.kubectl-plugin.io/balancer-kind": "l4",
            "keepalive.kubectl-plugin.io/idle-timeout-seconds": "1"}


def test_without_a_target_the_gateways_balancer_address_is_probed(
        env: dict[str, str]) -> None:  # noqa: F811
    with HoldServer("answer") as server:
        fake = _fronted(server.port, DECLARED)
        code, out, err = run(fake, env, "probe", "-n", "istio-system", "--hold", "1s",
                             "-o", "json")
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    assert (result["address"], result["port"]) == ("127.0.0.1", server.port)
    assert result["listener_port"] == 8080 and not result["tls"]
    assert result["target"] == f"istio-system/istio-ingressgateway:{server.port}"


def test_the_default_hold_comes_from_the_balancer_and_is_required_when_unknown(
        env: dict[str, str]) -> None:  # noqa: F811
    code, _, err = run(_fronted(1, {}), env, "probe", "-n", "istio-system")
    assert code == 2 and "--hold is required" in err
    assert "keepalive.kubectl-plugin.io/balancer-kind" in err
    # Declared at 1 s: the hold is 6 s; refused here only to keep the test short.
    code, _, err = run(_fronted(1, DECLARED), env, "probe", "-n", "istio-system",
                       "--hold", "2h")
    assert code == 2 and "reaches the gateway's own hcm idle_timeout (1h)" in err


def test_a_gateway_without_an_external_address_is_named(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = _fronted(80, DECLARED)
    fake.services[0].pop("status")
    code, _, err = run(fake, env, "probe", "-n", "istio-system", "--hold", "1s")
    assert code == 2
    assert "no LoadBalancer Service with an external address" in err
    assert "nothing to probe" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_progress_line_is_redrawn_and_cleared(
        env: dict[str, str]) -> None:  # noqa: F811
    out, err = io.StringIO(), _Terminal()
    with HoldServer("answer") as server:
        code = main(["probe", "--url", f"http://127.0.0.1:{server.port}/", "--hold", "2s",
                     "-o", "yaml"], out, err, None, env, io.StringIO(""))
    assert code == 0, err.getvalue()
    assert "\rprobe: holding " in err.getvalue() and "/2s, 0 probes seen" in err.getvalue()
    assert err.getvalue().count("\n") == 1  # the plan line; the progress line is erased
    document = yaml.safe_load(out.getvalue())
    assert document["results"][0]["outcome"] == "survived" and document["exit_code"] == 0


PROVE = "prove it from the clients' side: kubectl keepalive probe -n istio-system"


def test_doctor_ends_by_naming_the_probe_and_its_hold_when_no_balancer_tells_it(
        env: dict[str, str]) -> None:  # noqa: F811
    known = FakeCluster(gateway_with_dump())
    known.services = [service(NLB)]
    _, _, err = run(known, env, "doctor", "-n", "istio-system", "--duration", "10m")
    assert err.splitlines()[-1] == PROVE
    unknown = FakeCluster(gateway_with_dump())
    unknown.services = [service({})]
    _, _, err = run(unknown, env, "doctor", "-n", "istio-system", "-l", "app=istio-ingressgateway",
                    "--duration", "10m")
    assert err.splitlines()[-1] == f"{PROVE} -l app=istio-ingressgateway --hold DUR"


def test_enable_ends_by_naming_the_probe_and_disable_does_not(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service(NLB)]
    code, _, err = run(fake, env, "enable", "-y", "-n", "istio-system", "--idle", "30s")
    assert code == 0 and err.splitlines()[-1] == PROVE, err
    code, _, err = run(fake, env, "enable", "-y", "-n", "istio-system", "--idle", "30s")
    assert code == 0 and err.splitlines()[-1] == PROVE, err  # nothing to do: still proven so
    code, _, err = run(fake, env, "disable", "-y", "-n", "istio-system")
    assert code == 0 and "keepalive probe" not in err, err


def test_gateway_chooses_one_gateway_by_name(env: dict[str, str]) -> None:  # noqa: F811
    with HoldServer("answer") as server:
        fake = _fronted(server.port, DECLARED)
        code, out, err = run(fake, env, "probe", "-n", "istio-system", "--gateway",
                             "istio-ingressgateway", "--hold", "1s", "-o", "json")
        assert code == 0 and len(json.loads(out)["results"]) == 1, err
        code, out, err = run(fake, env, "probe", "-n", "istio-system", "--gateway", "other",
                             "--hold", "1s")
    assert code == 3 and out == ""
    assert "no gateway named other among those found (istio-system/istio-ingressgateway)" in err


def test_names_from_the_cluster_reach_the_terminal_escaped(
        env: dict[str, str]) -> None:  # noqa: F811
    with HoldServer("close") as server:
        fake = _fronted(server.port, DECLARED)
        fake.services[0]["metadata"]["name"] = "front\x1b]0;owned\x07"
        code, out, err = run(fake, env, "probe", "-n", "istio-system", "--hold", "1s")
    assert code == 4, err
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "front\\x1b]0;owned\\x07" in out


@pytest.mark.parametrize(("flags", "target_checked", "api_checked"), [
    ([], True, True),
    (["--insecure-target"], False, True),
    (["--insecure-skip-tls-verify"], True, False),  # kubectl's flag: the API server's alone
    (["--insecure-target", "--insecure-skip-tls-verify"], False, False),
])
def test_the_targets_certificate_check_has_a_flag_of_its_own(
        flags: list[str], target_checked: bool, api_checked: bool) -> None:
    from kubectl_keepalive.cli import probe_command
    from kubectl_keepalive.cli.main import build_parser

    args = build_parser().parse_args(["probe", "--hold", "1s", *flags])
    assert probe_command.request_from(args).insecure is not target_checked
    assert bool(getattr(args, "insecure_skip_tls_verify", False)) is not api_checked
