"""Which timer fires first for a described request, and the fix, on the golden dumps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubectl_keepalive.doctor import analysis, balancers, timers
from kubectl_keepalive.doctor.analysis import Profile, Report, Verdict
from kubectl_keepalive.doctor.balancers import Balancer, Layer
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import Keepalive, KeepaliveSettings
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import env, ingress, run  # noqa: F401  (env is a fixture)

from .test_doctor_timers import GOLDEN as GOLDEN_DIR
from .test_doctor_timers import read_golden

NO_KEEPALIVE = Keepalive(enabled=False)
AFTER_ENABLE = Keepalive(enabled=True, idle=60, interval=10, probes=3)


def nlb(seconds: int = 350) -> Balancer:
    return Balancer("aws-nlb", Layer.L4, seconds, "documented default", "test",
                    fix="annotation X")


def declared(layer: str, seconds: int) -> Balancer:
    return balancers.detect({"metadata": {"annotations": {
        balancers.DECLARED_KIND: layer, balancers.DECLARED_IDLE: str(seconds)}},
        "spec": {"type": "LoadBalancer"}})


def path(report: Report, suffix: str) -> analysis.PathReport:
    (found,) = [p for p in report.paths if p.name.endswith(suffix)]
    return found


def test_nlb_without_keepalive_cuts_a_ten_minute_request_at_350s() -> None:
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600),
                              keepalive=NO_KEEPALIVE)
    first = path(report, "/default").first
    assert first is not None and first.timer.layer == "balancer" and first.fires_at == 350
    assert first.fix.startswith("kubectl keepalive enable --idle 60s --interval 10 --probes 3")
    assert report.cut and report.exit_code == 1


def test_after_enable_nothing_fires_on_the_route_without_timeout() -> None:
    # The golden listener carries keepalive 60/10/3, as `enable` renders it.
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600))
    default = path(report, "/default")
    assert default.first is None
    (held,) = [f for f in default.findings if f.timer.layer == "balancer"]
    assert held.verdict is Verdict.HELD
    # Istio gateway: stream idle 0s and route timeout 0s are off, not firing.
    verdicts = {(f.timer.layer, f.timer.name): f.verdict for f in default.findings}
    assert verdicts[("hcm", "stream_idle_timeout")] is Verdict.OFF
    assert verdicts[("route", "timeout")] is Verdict.OFF
    assert verdicts[("route", "max_grpc_timeout")] is Verdict.OFF
    assert verdicts[("cluster", "idle_timeout")] is Verdict.NOT_APPLICABLE
    assert verdicts[("cluster", "connect_timeout")] is Verdict.NOT_APPLICABLE


def test_api_route_per_try_then_route_timeout() -> None:
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600))
    api = path(report, "/api")
    fired = [(f.timer.name, f.fires_at) for f in api.findings if f.verdict is Verdict.FIRES]
    assert fired == [("per_try_timeout", 4), ("timeout", 10)]
    first = api.first
    assert first is not None and first.timer.name == "per_try_timeout"
    assert "perTryTimeout" in first.fix and "virtual-service/api" in first.fix
    timeout = next(f for f in api.findings if f.timer.name == "timeout")
    assert "VirtualService http[].timeout" in timeout.fix
    assert api.origin == "/apis/networking.istio.io/v1/namespaces/default/virtual-service/api"


def test_l7_balancer_is_not_fixed_by_keepalive() -> None:
    report = analysis.analyze(read_golden("istio-gateway"),
                              balancers.detect({"metadata": {}, "spec": {"type": "LoadBalancer"}},
                                               ["aws:///a/i-1"]),
                              Profile(600))
    first = path(report, "/default").first
    assert first is not None and first.fires_at == 60 and first.verdict is Verdict.FIRES
    assert first.fix.startswith("keepalive will not help here: this balancer counts only data")
    assert "aws-load-balancer-connection-idle-timeout" in first.fix


def test_edge_profile_stream_idle_and_request_timeouts() -> None:
    port = read_golden("edge-gateway")
    quiet = analysis.analyze(port, nlb(), Profile(600), keepalive=AFTER_ENABLE)
    (only,) = quiet.paths
    fired = [(f.timer.name, f.fires_at) for f in only.findings if f.verdict is Verdict.FIRES]
    # route timeout absent = 15s default; stream idle 5 min; request timeout only with a body
    assert fired == [("timeout", 15), ("stream_idle_timeout", 300)]
    assert "Envoy counts HTTP events" in next(f for f in only.findings
                                         if f.timer.name == "stream_idle_timeout").fix
    upload = analysis.analyze(port, nlb(), Profile(900, silence=60, upload=400),
                              keepalive=AFTER_ENABLE)
    by_name = {f.timer.name: f for f in upload.paths[0].findings if f.timer.layer == "hcm"}
    assert by_name["request_timeout"].verdict is Verdict.FIRES
    assert by_name["request_timeout"].fires_at == 300
    assert by_name["stream_idle_timeout"].verdict is Verdict.SAFE  # 60s silence < 5 min
    assert by_name["request_headers_timeout"].verdict is Verdict.SAFE
    assert by_name["max_connection_duration"].verdict is Verdict.NOT_APPLICABLE


def test_tcp_passthrough_idle_is_not_held_by_keepalive() -> None:
    report = analysis.analyze(read_golden("tcp-passthrough"), nlb(), Profile(900),
                              keepalive=AFTER_ENABLE)
    (tcp,) = report.paths
    first = tcp.first
    assert first is not None and first.timer.layer == "tcp_proxy" and first.fires_at == 600
    assert "keepalive will not help here" in first.fix and "tcp.idleTimeout" in first.fix
    assert tcp.name.startswith("tcp_proxy")


def test_lab_balancer_declared_like_a_cloud_annotation() -> None:
    # The incident lab: a NAT whose conntrack forgets idle flows after 6 s; a 15 s request.
    lab = declared("l4", 6)
    cut = analysis.analyze(read_golden("istio-gateway"), lab, Profile(15), keepalive=NO_KEEPALIVE)
    first = path(cut, "/default").first
    assert first is not None and first.fires_at == 6
    assert "--idle 2s --interval 1" in first.fix
    safe = analysis.analyze(read_golden("istio-gateway"), lab, Profile(15),
                            keepalive=Keepalive(True, 2, 2, 3))
    assert path(safe, "/default").first is None
    slow = analysis.analyze(read_golden("istio-gateway"), lab, Profile(15),
                            keepalive=Keepalive(True, 60, 10, 3))
    slow_first = path(slow, "/default").first
    assert slow_first is not None and slow_first.fix.startswith("keepalive is on but too slow")


def test_short_silence_does_not_trip_idle_timers() -> None:
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600, silence=120),
                              keepalive=NO_KEEPALIVE)
    assert path(report, "/default").first is None
    assert report.exit_code == 1  # the /api route still has its 4 s per-try timeout


def test_enabled_keepalive_with_kernel_defaults_does_not_hold_an_nlb() -> None:
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600),
                              keepalive=Keepalive(enabled=True))
    first = path(report, "/default").first
    assert first is not None and first.timer.layer == "balancer"  # 7200 s kernel idle


def test_drains_are_risks_not_cuts() -> None:
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600),
                              drains=analysis.drain_timers())
    default = path(report, "/default")
    assert [(f.timer.name, f.verdict) for f in report.risks] == [
        ("listener drain", Verdict.RISK), ("termination drain", Verdict.RISK)]
    assert "drainDuration" in report.risks[0].fix
    assert "terminationDrainDuration" in report.risks[1].fix
    # max_connection_duration drains the upstream connection after the request: not a cut
    (mcd,) = [f for f in default.findings
              if (f.timer.layer, f.timer.name) == ("cluster", "max_connection_duration")]
    assert mcd.verdict is Verdict.NOT_APPLICABLE
    assert default.first is None


def test_grpc_only_timers_apply_to_grpc_profiles() -> None:
    from kubectl_keepalive.doctor.timers import Counts, Start, State, Timer

    grpc = Timer("grpc_timeout_header_max", "route", 30.0, State.SET, Counts.ABSOLUTE, "p",
                 Start.REQUEST_END, "response-end", grpc_only=True)
    port = read_golden("envoy-defaults")
    chain = port.chains[0]
    route = chain.routes[0]
    from dataclasses import replace

    patched = replace(port, chains=(replace(chain, routes=(replace(
        route, timers=(*route.timers, grpc)),)),))
    plain = analysis.analyze(patched, nlb(), Profile(60), keepalive=AFTER_ENABLE)
    as_grpc = analysis.analyze(patched, nlb(), Profile(60, grpc=True), keepalive=AFTER_ENABLE)

    def verdict(report: Report) -> Verdict:
        return next(f for f in report.paths[0].findings if f.timer is grpc).verdict

    assert verdict(plain) is Verdict.NOT_APPLICABLE and verdict(as_grpc) is Verdict.FIRES


def test_unknown_balancer_is_a_note_not_a_row() -> None:
    unknown = balancers.detect({"metadata": {}, "spec": {"type": "LoadBalancer"}})
    report = analysis.analyze(read_golden("istio-gateway"), unknown, Profile(600))
    assert any("idle timeout unknown" in n for n in report.notes)
    assert all(f.timer.layer != "balancer" for p in report.paths for f in p.findings)


@pytest.mark.parametrize(("timeout", "settings"), [
    (350, KeepaliveSettings(60, 10, 3)),
    (240, KeepaliveSettings(60, 10, 3)),
    (6, KeepaliveSettings(2, 1, 3)),
    (100, KeepaliveSettings(38, 12, 3)),
    (2, KeepaliveSettings(1, 1, 3)),
])
def test_recommend_keepalive(timeout: int, settings: KeepaliveSettings) -> None:
    advice = analysis.recommend_keepalive(timeout)
    assert advice.settings == settings
    assert advice.reason
    if timeout >= 6:
        assert settings.idle + settings.interval <= timeout / 2


def test_recommend_keepalive_rejects_too_short() -> None:
    with pytest.raises(UsageError):
        analysis.recommend_keepalive(1)


@pytest.mark.parametrize("kwargs", [
    {"duration": 0}, {"duration": 10, "silence": 11}, {"duration": 10, "upload": -1},
    {"duration": 10, "upload": 11}])
def test_profile_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        Profile(**kwargs)


def test_profile_timeline() -> None:
    p = Profile(600, silence=300, upload=30)
    assert (p.quiet, p.silence_start, p.response_start) == (300, 30, 330)
    assert Profile(600).silence_start == 0 and Profile(600).response_start == 600


def test_a_listener_whose_routes_only_answer_directly_still_faces_the_balancer() -> None:
    from dataclasses import replace

    golden = read_golden("istio-gateway")
    direct_only = replace(golden, chains=tuple(replace(c, routes=()) for c in golden.chains))
    report = analysis.analyze(direct_only, nlb(), Profile(600), keepalive=NO_KEEPALIVE)
    (only,) = report.paths
    assert only.name.endswith("(no route forwards upstream)")
    assert only.first is not None and only.first.timer.layer == "balancer"
    assert only.first.fires_at == 350


def test_istio_edge_profile_names_the_stream_idle_timer_first() -> None:
    # Istio 1.31 connectionSettings EDGE: stream idle 300s, request 300s, headers 60s, idle 1h;
    # keepalive 60/10/3 from Listener.tcp_keepalive holds the NLB, so Envoy's own timer cuts.
    port = read_golden("istio-edge-gateway")
    assert port.keepalive.sources == ("tcp_keepalive",)
    report = analysis.analyze(port, nlb(), Profile(600))
    (only,) = report.paths
    first = only.first
    assert first is not None
    assert (first.timer.name, first.timer.layer, first.fires_at) == (
        "stream_idle_timeout", "hcm", 300)
    assert first.fix.startswith("keepalive will not help here")
    assert report.exit_code == 1


def test_doctor_cli_names_the_edge_stream_idle_timer_first(
        env: dict[str, str]) -> None:  # noqa: F811
    raw = (GOLDEN_DIR / "istio-edge-gateway.config_dump.json").read_text()
    (port,) = timers.ports(raw)
    gateway = ingress()
    gateway.ports = [8080]
    gateway.full_dump = raw.replace(f'"port_value": {port}', '"port_value": 8080')
    fake = FakeCluster(gateway)
    fake.services = [{"metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
                                   "annotations": {
                                       "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
                      "spec": {"type": "LoadBalancer",
                               "selector": {"app": "istio-ingressgateway",
                                            "istio": "ingressgateway"},
                               "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}]
    code, out, err = run(fake, env, "doctor", "--duration", "10m", "-o", "json")
    assert code == 1, err
    (checked,) = json.loads(out)["gateways"][0]["ports"]
    firsts = [p["first"] for p in checked["paths"]]
    assert firsts == [{"timer": "stream_idle_timeout", "scope": "listener 0.0.0.0_8080",
                       "fires_at": 300}], firsts


def test_so_keepalive_alone_says_kernel_timers_are_too_slow_for_the_balancer() -> None:
    kernel_only = Keepalive(enabled=True, sources=("socket_options",))
    report = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600),
                              keepalive=kernel_only)
    (note,) = [n for n in report.notes if "kernel's default timers" in n]
    assert "first probe comes after 2h" in note and "(5m50s)" in note, note
    # Explicit timers under the balancer's timeout: no such note.
    quiet = analysis.analyze(read_golden("istio-gateway"), nlb(), Profile(600),
                             keepalive=AFTER_ENABLE)
    assert not any("kernel's default timers" in n for n in quiet.notes)
    # Only the interval left to the kernel (75s) with a short idle: still fine for 350s.
    partial = Keepalive(enabled=True, idle=60, probes=3)
    assert not any("kernel's" in n for n in analysis.analyze(
        read_golden("istio-gateway"), nlb(), Profile(600), keepalive=partial).notes)
