"""The CLI contract end to end over FakeCluster (a fake; tests/cluster uses a real API server)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.cli.main import main
from kubectl_keepalive.istio import envoyfilter
from tests.unit.fake_cluster import FakeCluster, FakeGateway

KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "lab",
    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "u",
                                             "namespace": "istio-system"}}],
    "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
}


def ingress() -> FakeGateway:
    return FakeGateway("istio-system", "istio-ingressgateway",
                       {"app": "istio-ingressgateway", "istio": "ingressgateway"}, [8080, 8443],
                       replicas=2)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return {"KUBECONFIG": str(path)}


def run(fake: FakeCluster | None, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def factory(_: Any) -> FakeCluster:
        if fake is None:
            raise AssertionError("this command must not contact a cluster")
        return fake

    code = main(list(argv), out, err, factory, env, io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def keepalive_by_port(fake: FakeCluster, env: dict[str, str]) -> dict[int, Any]:
    code, out, _ = run(fake, env, "status", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    result = {}
    for pod in doc["gateways"][0]["pods"]:
        for lst in pod["listeners"]:
            result[lst["port"]] = lst["keepalive"]
    return result


def test_enable_then_everything_is_in_sync(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    assert keepalive_by_port(fake, env)[8080] == {
        "enabled": False, "idle": None, "interval": None, "probes": None}
    assert run(fake, env, "diff")[0] == 1
    code, out, err = run(fake, env, "enable", "-y", "--idle", "7s", "--interval", "5",
                         "--probes", "2")
    assert code == 0, err
    assert "envoyfilter istio-system/keepalive-istio-ingressgateway created" in out
    assert "deployment istio-system/istio-ingressgateway restarted" in out
    assert "verified: gateway istio-system/istio-ingressgateway" in out
    assert keepalive_by_port(fake, env) == {
        p: {"enabled": True, "idle": 7, "interval": 5, "probes": 2} for p in (8080, 8443)}
    assert [w[0] for w in fake.writes] == ["create", "restart"]
    # The same settings again: nothing written, nothing restarted, and it says so.
    code, _, err = run(fake, env, "enable", "-y", "--idle", "7s", "--interval", "5",
                       "--probes", "2")
    assert code == 0 and "nothing to do" in err
    assert [w[0] for w in fake.writes] == ["create", "restart"]
    assert run(fake, env, "diff", "--idle", "7", "--interval", "5", "--probes", "2")[0] == 0


def test_changed_settings_patch_with_a_resource_version_test(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    assert run(fake, env, "enable", "-y")[0] == 0
    code, _, err = run(fake, env, "enable", "-y", "--idle", "30")
    assert code == 0, err
    kind, _, body = fake.writes[-2]
    assert kind == "patch"
    operations = json.loads(body)
    assert operations[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "101"}
    assert keepalive_by_port(fake, env)[8080]["idle"] == 30


def test_foreign_filter_blocks_enable_unless_forced(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    fake.add_filter({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                     "metadata": {"name": "hand-made-keepalive", "namespace": "istio-system"},
                     "spec": {"workloadSelector": {"labels": {"istio": "ingressgateway"}},
                              "configPatches": [{
                                  "applyTo": "LISTENER",
                                  "match": {"context": "GATEWAY",
                                            "listener": {"portNumber": 8080}},
                                  "patch": {"operation": "MERGE", "value": {"socket_options": [
                                      {"level": 1, "name": 9, "int_value": 1}]}}}]}})
    code, out, err = run(fake, env, "enable", "-y")
    assert code == 3 and out == ""
    assert err.startswith("error: ") and "istio-system/hand-made-keepalive" in err
    assert fake.writes == []
    # Forced: ours are appended after the older foreign ones, so our values are effective.
    code, _, err = run(fake, env, "enable", "-y", "--force")
    assert code == 0, err
    code, out, _ = run(fake, env, "status", "-o", "json")
    listener = json.loads(out)["gateways"][0]["pods"][0]["listeners"][0]
    assert listener["duplicate_options"] is True
    assert json.loads(out)["gateways"][0]["foreign_envoyfilters"] == [
        "istio-system/hand-made-keepalive"]
    # Disabling removes ours and verifies that; the foreign filter's option stays, as said.
    code, out, err = run(fake, env, "disable", "-y", "--timeout", "5s")
    assert code == 0, err
    assert "port 8080 (0.0.0.0_8080): on idle=60s interval=10s probes=3 (duplicated options) " \
        "-> on (from EnvoyFilter istio-system/hand-made-keepalive)" in err
    assert "port 8443 (0.0.0.0_8443): on idle=60s interval=10s probes=3 -> off" in err
    assert ("verified: gateway istio-system/istio-ingressgateway: keepalive on port(s) 8080 "
            "stays, set by EnvoyFilter istio-system/hand-made-keepalive") in out
    assert "verified: gateway istio-system/istio-ingressgateway: off on port(s) 8443" in out
    assert fake.pushed_at_restart[-1] is True  # waited for istiod on 8443, the port left to us


def test_status_says_when_no_istiod_takes_the_managed_filter(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    assert run(fake, env, "enable", "-y")[0] == 0
    (key,) = fake.filters
    # Labelled for a revision (or a tag) that serves none of the gateway's pods.
    fake.filters[key]["metadata"]["labels"]["istio.io/rev"] = "prod-stable"
    code, _, err = run(fake, env, "status")
    assert code == 0
    assert ("gateway istio-system/istio-ingressgateway: its EnvoyFilter "
            "keepalive-istio-ingressgateway is labelled istio.io/rev=prod-stable but its pods are "
            "served by revision default, so no istiod applies it") in err
    # enable relabels it (the label is part of what it owns) and the note is gone.
    code, out, err = run(fake, env, "diff")
    assert code == 1 and "-    istio.io/rev: prod-stable" in out, out
    assert run(fake, env, "enable", "-y")[0] == 0
    assert "istio.io/rev" not in fake.filters[key]["metadata"]["labels"]
    assert "no istiod applies it" not in run(fake, env, "status")[2]


def test_disable_removes_only_the_managed_filter(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    fake.add_filter({"metadata": {"name": "unrelated", "namespace": "istio-system"},
                     "spec": {"configPatches": []}})
    assert run(fake, env, "enable", "-y")[0] == 0
    code, out, err = run(fake, env, "disable", "-y")
    assert code == 0, err
    assert "envoyfilter istio-system/keepalive-istio-ingressgateway deleted" in out
    assert list(fake.filters) == [("istio-system", "unrelated")]
    assert not keepalive_by_port(fake, env)[8080]["enabled"]
    code, _, err = run(fake, env, "disable", "-y")
    assert code == 0 and "nothing to do" in err


def test_paused_deployment_is_refused_before_any_write(env: dict[str, str]) -> None:
    gateway = ingress()
    gateway.paused = True
    fake = FakeCluster(gateway)
    code, out, err = run(fake, env, "enable", "-y")
    assert code == 3 and out == "" and "is paused" in err and fake.writes == []
    assert err.count("\n") >= 1 and "error: deployment" in err


def test_a_stuck_rollout_says_what_was_done_and_a_rerun_finishes(env: dict[str, str]) -> None:
    gateway = ingress()
    gateway.never_available = True
    fake = FakeCluster(gateway)
    code, _, err = run(fake, env, "enable", "-y", "--timeout", "1s")
    assert code == 3
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: timed out")
    assert "already done: envoyfilter istio-system/keepalive-istio-ingressgateway created" in last
    assert "deployment istio-system/istio-ingressgateway restarted" in last
    assert "re-run" in last
    gateway.never_available = False
    gateway.rollout_reads_until_done = 3  # the controller is still finishing when re-run
    fake._rollout_reads.clear()
    code, out, err = run(fake, env, "enable", "-y", "--timeout", "10s")
    assert code == 0, err
    assert "verified" in out
    assert [w[0] for w in fake.writes] == ["create", "restart"]  # filter was right: no rewrite


def test_options_that_never_go_live_fail_verification(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress(), propagate=False)
    code, _, err = run(fake, env, "enable", "-y", "--no-restart", "--timeout", "1s")
    assert code == 4
    assert "options not live" in err and "port 8080 shows off" in err


def test_the_restart_waits_until_istiod_has_pushed_the_filter(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    fake.push_after_reads = 2  # both pods' first reads after the write still show no options
    code, _, err = run(fake, env, "enable", "-y", "--timeout", "30s")
    assert code == 0, err
    assert "waiting for istiod to push the change" in err
    assert [w[0] for w in fake.writes] == ["create", "restart"]
    assert fake.pushed_at_restart == [True]
    # Disabling waits the same way for the options to be gone before rolling.
    code, _, err = run(fake, env, "disable", "-y", "--timeout", "30s")
    assert code == 0, err
    assert [w[0] for w in fake.writes] == ["create", "restart", "delete", "restart"]
    assert fake.pushed_at_restart == [True, True]


def test_a_port_no_pod_listens_on_is_refused_before_any_restart(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    code, _, err = run(fake, env, "enable", "-y", "--port", "8080", "--port", "9999")
    assert code == 4
    assert "no pod has a TCP listener on port(s) 9999" in err and "not restarted" in err
    assert [w[0] for w in fake.writes] == ["create"]


def test_a_filter_istiod_never_pushes_is_not_followed_by_a_restart(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress(), propagate=False)
    code, _, err = run(fake, env, "enable", "-y", "--timeout", "3s")
    assert code == 4
    # Polled every second, but said once: progress lines repeat only when they change.
    assert err.count("waiting for istiod to push the change") == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: gateway istio-system/istio-ingressgateway: istiod has not "
                           "pushed the change")
    assert "was not restarted" in last and "revision default running" in last
    assert "istio-ingressgateway-aaaa1-0: port 8080 shows off" in last
    assert "already done: envoyfilter istio-system/keepalive-istio-ingressgateway created" in last
    assert [w[0] for w in fake.writes] == ["create"]
    # Once istiod pushes, Envoy (>= 1.25) takes the options in place on new sockets: the same
    # command then finds them live and has nothing left to do.
    fake.propagate = True
    code, _, err = run(fake, env, "enable", "-y", "--timeout", "30s")
    assert code == 0, err
    assert [w[0] for w in fake.writes] == ["create"]
    assert "nothing to do" in err


def test_quic_port_is_never_patched_and_its_tcp_twin_is_matched_by_name(
        env: dict[str, str]) -> None:
    helm = FakeGateway("ingress", "istio-gateway", {"app": "istio-gateway", "istio": "gateway"},
                       [80, 443], udp_ports=[443])
    fake = FakeCluster(helm)
    code, out, err = run(fake, env, "enable", "-y", "-n", "ingress", "-o", "yaml")
    assert code == 0, err
    (doc,) = list(yaml.safe_load_all(out))
    matches = [p["match"]["listener"] for p in doc["spec"]["configPatches"]]
    assert matches == [{"portNumber": 80}, {"portNumber": 443, "name": "0.0.0.0_443"}]
    code, out, _ = run(fake, env, "status", "-n", "ingress", "-o", "json")
    udp = [lst for lst in json.loads(out)["gateways"][0]["pods"][0]["listeners"]
           if lst["protocol"] == "UDP"]
    assert udp and not udp[0]["keepalive"]["enabled"]


def test_server_dry_run_writes_nothing(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    code, out, _ = run(fake, env, "enable", "-y", "--dry-run=server")
    assert code == 0 and "(server dry run)" in out
    assert fake.filters == {} and fake.writes == [("create", "istio-system/keepalive-istio-"
                                                             "ingressgateway", "dry")]


def test_offline_render_needs_no_cluster_and_matches_the_online_one(
        env: dict[str, str]) -> None:
    argv = ["enable", "--dry-run=client", "-n", "istio-system", "-l",
            "app=istio-ingressgateway,istio=ingressgateway", "--port", "8080", "--port", "8443",
            "-o", "yaml"]
    code, offline, err = run(None, env, *argv)
    assert code == 0, err
    code, online, _ = run(FakeCluster(ingress()), env, "enable", "--dry-run=client", "-y",
                          "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(offline) == yaml.safe_load(online)
    assert envoyfilter.settings_in(yaml.safe_load(offline))[8443] is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["enable", "--idle", "1.5s"],
        ["enable", "--interval", "0"],
        ["enable", "--probes", "128"],
        ["enable", "--port", "70000"],
        ["enable", "--port", "15021"],
        ["enable", "--bogus"],
        ["enable", "--dry-run=maybe"],
        ["status", "--from-file", "/nonexistent/dump.json"],
        ["status", "-o", "xml"],
        ["status", "--context", "nope"],
        ["frobnicate"],
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_no_change(argv: list[str],
                                                          env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    code, out, err = run(fake, env, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fake.writes == []


def test_malformed_from_file_is_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "dump.json"
    bad.write_text("{not json")
    code, out, err = run(None, env, "status", "--from-file", str(bad))
    assert (code, out) == (2, "") and err.startswith(f"error: {bad}: not a JSON")
    assert err.count("\n") == 1


def test_status_from_stdin(env: dict[str, str]) -> None:
    dump = {"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                         "dynamic_listeners": [{"name": "0.0.0.0_8080", "active_state": {
                             "listener": {"name": "0.0.0.0_8080", "address": {"socket_address": {
                                 "port_value": 8080}}, "socket_options": [
                                 {"level": "1", "name": "9", "int_value": "1"}]}}}]}]}
    out, err = io.StringIO(), io.StringIO()
    stdin = io.StringIO(json.dumps(dump))
    assert main(["status", "--from-file", "-", "-o", "json"], out, err, None, env, stdin) == 0
    doc = json.loads(out.getvalue())
    assert doc["gateways"][0]["name"] is None and doc["gateways"][0]["pods"][0]["name"] is None
    assert doc["gateways"][0]["pods"][0]["listeners"][0]["keepalive"] == {
        "enabled": True, "idle": None, "interval": None, "probes": None}


def test_no_gateways_found_is_not_an_error_for_status(env: dict[str, str]) -> None:
    code, out, err = run(FakeCluster(), env, "status")
    assert code == 0 and out == "" and "No Istio ingress gateways found" in err
    code, _, err = run(FakeCluster(), env, "enable", "-y")
    assert code == 3 and "no Istio ingress gateway found in namespace istio-system" in err


def test_version_and_help(env: dict[str, str]) -> None:
    code, out, _ = run(None, env, "version")
    assert code == 0 and out.startswith("kubectl-keepalive v")
    with pytest.raises(SystemExit) as exit_info:
        run(None, env, "--help")
    assert exit_info.value.code == 0


# -- issue 12: every input answered before contact, and never a traceback --------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "Bad_NS", "status"],
        ["status", "-n", "../../apis/apps/v1/namespaces/kube-system/deployments?x="],
        ["enable", "-y", "--gateway", "Bad Name!"],
        ["status", "-l", "a b=c d"],
        ["status", "--istio-namespace", "Istio_System"],
        ["enable", "-y", "--idle", "²"],
        ["enable", "-y", "--idle", "9" * 5000],
        ["doctor", "--duration", "9" * 5000 + "s"],
        ["enable", "-y", "--port", "9" * 5000],
        ["enable", "-y", "--probes", "٣"],
        ["status", "--request-timeout", "soon"],
        ["status", "--token", "a\r\nX-Injected: 1"],
        ["status", "-v", "many"],
        ["status", "--from-file", "a\x00b"],
        ["enable"],  # no terminal, no -y
        ["disable"],
    ],
)
def test_rejected_before_any_contact(argv: list[str], env: dict[str, str]) -> None:
    code, out, err = run(None, env, *argv)  # the factory fails the test if it is called
    assert (code, out) == (2, ""), err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_enable_and_disable_need_y_without_a_terminal(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    code, _, err = run(fake, env, "enable")
    assert code == 2 and "pass -y to apply without a prompt" in err
    code, _, err = run(fake, env, "disable")
    assert code == 2 and "pass -y" in err
    assert fake.writes == [] and fake.filters == {}
    # dry runs write nothing and need no yes
    assert run(fake, env, "enable", "--dry-run=client")[0] == 0
    assert fake.writes == []


def test_double_equals_selector_means_equals(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    code, out, err = run(fake, env, "status", "-l", "app==istio-ingressgateway", "-o", "json")
    assert code == 0, err
    assert [g["name"] for g in json.loads(out)["gateways"]] == ["istio-ingressgateway"]
    code, out, err = run(fake, env, "enable", "-y", "-l", "app==istio-ingressgateway",
                         "-o", "json")
    assert code == 0, err
    # -l chose the gateway; the filter selects by its Deployment's selector.
    assert json.loads(out)["spec"]["workloadSelector"]["labels"] == {
        "app": "istio-ingressgateway", "istio": "ingressgateway"}


def test_status_from_closed_stdin_is_a_usage_error(env: dict[str, str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    closed = io.StringIO("{}")
    closed.close()
    for stdin in (None, closed):
        import sys

        saved, sys.stdin = sys.stdin, None  # type: ignore[assignment]
        try:
            code = main(["status", "--from-file", "-"], out, err, None, env, stdin)
        finally:
            sys.stdin = saved
        assert code == 2 and out.getvalue() == ""
        assert err.getvalue().splitlines()[-1].startswith("error: "), err.getvalue()
        assert "stdin" in err.getvalue().splitlines()[-1]


class ClosedPipe(io.StringIO):
    """A stdout whose reader went away (`status | head -0`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_stdout_keeps_the_commands_own_exit_code(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    err = io.StringIO()
    assert main(["status"], ClosedPipe(), err, lambda _: fake, env, io.StringIO()) == 0
    assert err.getvalue() == ""
    # A diff that finds changes still says so with its exit code, and enable is not cut
    # halfway by its progress lines: it finishes, writes, and verifies.
    assert main(["diff"], ClosedPipe(), err, lambda _: fake, env, io.StringIO()) == 1
    assert main(["enable", "-y"], ClosedPipe(), err, lambda _: fake, env, io.StringIO()) == 0
    assert [w[0] for w in fake.writes] == ["create", "restart"]


class PipeBreaksOnRead(FakeCluster):
    """A port-forward socket whose peer went away: a BrokenPipeError that is not stdout's."""

    def read_admin(self, pod: Any, path: str, timeout: float) -> Any:
        raise BrokenPipeError(32, "Broken pipe")


def test_broken_pipe_from_the_cluster_is_never_success(env: dict[str, str]) -> None:
    for argv in (["status"], ["enable", "-y", "--dry-run=server"], ["diff"]):
        code, _, err = run(PipeBreaksOnRead(ingress()), env, *argv)
        assert code not in (0, 1), (argv, code, err)
        assert "error:" in err and "Traceback" not in err


class Exploding(FakeCluster):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(ingress())
        self.exc = exc

    def list_pods(self, namespace: str | None, selector: str) -> Any:
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), RecursionError("too deep"),
                                 MemoryError(), OSError(5, "I/O error"), KeyError("x\ny"),
                                 BrokenPipeError(32, "Broken pipe")])
def test_unexpected_errors_are_one_line_exit_5(exc: BaseException,
                                                env: dict[str, str]) -> None:
    code, out, err = run(Exploding(exc), env, "status")
    assert (code, out) == (5, "")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: `status` failed unexpectedly: {type(exc).__name__}")
    code, _, err = run(Exploding(exc), env, "status", "-v", "1")
    assert code == 5 and "Traceback (most recent call last)" in err


def test_an_error_quoting_a_line_break_stays_one_line(env: dict[str, str]) -> None:
    code, out, err = run(None, env, "status", "\n")
    assert (code, out) == (2, "")
    assert err.startswith("error: unrecognized arguments: \\n") and err.count("\n") == 1, err


def _reversed_keys(value: Any) -> Any:
    """`value` with every mapping in the opposite key order, as an API server may store it."""
    if isinstance(value, dict):
        return {key: _reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(item) for item in value]
    return value


def test_diff_marks_only_the_lines_that_changed(env: dict[str, str]) -> None:
    fake = FakeCluster(ingress())
    assert run(fake, env, "enable", "-y", "--idle", "45s")[0] == 0
    key = ("istio-system", envoyfilter.managed_name("istio-ingressgateway"))
    fake.filters[key] = _reversed_keys(fake.filters[key])
    code, out, _ = run(fake, env, "diff", "--idle", "46s")
    assert code == 1
    diff = [line[2:] for line in out.splitlines() if line.startswith("  ")]  # plan indents it
    changed = [line[0] + line[1:].strip() for line in diff
               if line[:1] in ("+", "-") and not line.startswith(("---", "+++"))]
    # one int_value per patched port, nothing else
    assert sorted(changed) == ["+int_value: 46", "+int_value: 46",
                               "-int_value: 45", "-int_value: 45"], out


@pytest.mark.parametrize("flags", [["-o", "jsonpath={.gateways["], ["-o", "custom-columns=A"],
                                   ["-o", "custom-columns=A:{.x["], ["--sort-by", "{.x["]])
def test_a_bad_output_template_is_refused_before_any_contact(env: dict[str, str],
                                                             flags: list[str]) -> None:
    code, out, err = run(None, env, "status", *flags)  # None: contacting the cluster fails
    assert (code, out) == (2, ""), err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
