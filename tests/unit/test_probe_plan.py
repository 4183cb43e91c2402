"""`probe`'s pure parts: proxies from the environment as curl reads them, targets and hold
times from the flags, the hold the gateway's own timers allow (real Envoy dumps), TLS and
external addresses read from the cluster's objects, the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_keepalive.doctor import timers
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.probe import proxyenv, session, targets
from kubectl_keepalive.usecases import probe

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.mark.parametrize(("scheme", "host", "env", "expected"), [
    ("https", "gw.example.test", {"HTTPS_PROXY": "p:3128"}, ("p", 3128, "HTTPS_PROXY")),
    ("https", "gw.example.test", {"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"},
     ("a", 1, "https_proxy")),  # lower case first
    ("http", "gw.example.test", {"HTTP_PROXY": "p:3128"}, None),  # curl ignores upper case
    ("http", "gw.example.test", {"http_proxy": "p"}, ("p", 1080, "http_proxy")),  # curl's port
    ("https", "gw.example.test", {"ALL_PROXY": "p:8"}, ("p", 8, "ALL_PROXY")),
    ("https", "gw.example.test", {"HTTPS_PROXY": "p:1", "NO_PROXY": "example.test"}, None),
    ("https", "gw.example.test", {"HTTPS_PROXY": "p:1", "no_proxy": ".example.test"}, None),
    ("https", "gw.notexample.test", {"HTTPS_PROXY": "p:1", "NO_PROXY": "example.test"},
     ("p", 1, "HTTPS_PROXY")),  # a suffix only at a dot
    ("https", "198.18.5.5", {"HTTPS_PROXY": "p:1", "NO_PROXY": "198.18.0.0/15"}, None),
    ("https", "198.20.5.5", {"HTTPS_PROXY": "p:1", "NO_PROXY": "198.18.0.0/15"},
     ("p", 1, "HTTPS_PROXY")),
    ("https", "anything", {"HTTPS_PROXY": "p:1", "NO_PROXY": "*"}, None),
    ("https", "b.test", {"HTTPS_PROXY": "p:1", "NO_PROXY": "a.test b.test"}, None),
    ("https", "localhost", {"HTTPS_PROXY": "p:1"}, ("p", 1, "HTTPS_PROXY")),  # no exception
])
def test_the_proxy_is_chosen_as_curl_chooses_it(scheme: str, host: str, env: dict[str, str],
                                                 expected: tuple[str, int, str] | None) -> None:
    found = proxyenv.choose(scheme, host, env)
    assert (None if found is None else (found.host, found.port, found.source)) == expected


@pytest.mark.parametrize("value", ["https://p:1", "socks5://p:1", "http://:1"])
def test_a_proxy_the_probe_cannot_tunnel_through_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match="only http:// proxies"):
        proxyenv.choose("https", "gw.test", {"HTTPS_PROXY": value})


def test_a_urls_host_port_path_and_server_name() -> None:
    target = targets.from_url("https://gw.example.test:8443/healthz?x=1", None)
    assert (target.host, target.port, target.path) == ("gw.example.test", 8443, "/healthz?x=1")
    assert target.host_header == "gw.example.test:8443"
    assert target.server_name == "gw.example.test" and target.tls
    by_address = targets.from_url("https://198.18.100.10", None)
    assert by_address.server_name is None and by_address.port == 443  # no SNI for an address
    named = targets.from_url("https://198.18.100.10", "app.example.test")
    assert named.server_name == named.host_header == "app.example.test"
    plain = targets.from_url("http://[::1]:8080", "app.example.test")
    assert plain.server_name is None and plain.address == "[::1]:8080"


@pytest.mark.parametrize("url", ["ftp://x/", "http://", "gw.example.test", "http://u:p@x/",
                                 "http://x/a b", "http://x:99999/", "http://x/\x1b[2J",
                                 "http://a\x1bb/", "http://a b/", "http://\u00e4.test/",
                                 "http://a%0a/"])
def test_a_url_that_is_not_a_probe_target_is_refused(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        targets.from_url(url, None)
    assert "\x1b" not in str(caught.value)


@pytest.mark.parametrize("host", ["a b", "x\r\nEvil: 1", "", "a" * 254])
def test_a_host_that_could_split_the_request_is_refused(host: str) -> None:
    with pytest.raises(UsageError, match="--host"):
        targets.check_host_name(host)


def test_holds_and_their_spread() -> None:
    assert targets.parse_hold("10s") == (10, 10)
    assert targets.parse_hold("5s..1m") == (5, 60)
    assert targets.spread(5, 25, 5) == [5, 10, 15, 20, 25]
    assert targets.spread(10, 10, 3) == [10, 10, 10]
    for bad in ("0s", "20s..10s", "..", "10s..", "ten"):
        with pytest.raises(UsageError):
            targets.parse_hold(bad)
    with pytest.raises(UsageError, match="--connections"):
        targets.spread(1, 2, 65)


def test_the_default_hold_runs_a_margin_past_the_balancers_idle_timeout() -> None:
    assert probe.default_hold(6) == 11  # at least 5 s past
    assert probe.default_hold(350) == 385  # or 10 %
    request = probe.Request(url="http://198.18.0.1/", host=None, hold=None, connections=1,
                            answer_timeout=10, connect_timeout=10, insecure=False)
    with pytest.raises(UsageError, match="--hold is required"):
        probe.plan_url(request, {})


def test_a_url_held_past_envoys_default_idle_timeout_is_noted() -> None:
    def notes(hold: int) -> list[str]:
        request = probe.Request(url="http://198.18.0.1/", host=None, hold=(hold, hold),
                                connections=1, answer_timeout=10, connect_timeout=10,
                                insecure=False)
        return probe.plan_url(request, {})[1]

    assert notes(3599) == []
    (note,) = notes(3600)
    assert "idle_timeout" in note and "1h" in note


def _golden_port(name: str) -> timers.PortTimers:
    raw = (GOLDEN / "doctor" / f"{name}.config_dump.json").read_text()
    (port,) = [p for p in timers.ports(raw) if p not in (15000, 15021, 15090)]
    return timers.read_port(raw, port)


@pytest.mark.parametrize(("name", "limit", "layer", "field"), [
    ("istio-gateway", 3600, "hcm", "common_http_protocol_options.idle_timeout (absent"),
    ("edge-gateway", 900, "hcm", "common_http_protocol_options.idle_timeout"),
    ("tcp-passthrough", 600, "tcp_proxy", "tcp_proxy.idle_timeout"),
])
def test_a_hold_the_gateways_own_timer_would_end_is_refused_naming_it(
        name: str, limit: int, layer: str, field: str) -> None:
    port = _golden_port(name)
    found = probe.idle_limit(port)
    assert found is not None and found.seconds == limit and found.layer == layer
    probe.check_hold([limit - 1], port)
    with pytest.raises(UsageError) as caught:
        probe.check_hold([10, limit], port)
    message = str(caught.value)
    assert f"{layer} idle_timeout" in message and field in message
    assert f"on port {port.port}" in message and "not the balancer's" in message


def test_tls_listeners_and_external_addresses() -> None:
    dump = json.loads((GOLDEN / "helm-80-443-quic" / "config_dump.json").read_text())
    assert probe.listener_tls(dump, 443) and not probe.listener_tls(dump, 80)
    assert not probe.listener_tls(dump, 9999)
    service = {"status": {"loadBalancer": {"ingress": [
        {"ip": "198.18.100.10"}, {"hostname": "lb.example.test"}, {"ipMode": "VIP"}, "x",
        {"hostname": "evil\r\nX: 1"}, {"hostname": "a" * 254}]}}}
    assert probe.ingress_addresses(service) == ["198.18.100.10", "lb.example.test"]
    assert probe.ingress_addresses({"status": {}}) == []


def _result(outcome: str) -> session.Result:
    target = targets.from_url("http://198.18.0.1/", None)
    return session.Result(target, 1, 1, outcome, "", 0, "", None, ())


@pytest.mark.parametrize(("outcomes", "code"), [
    (["survived", "survived"], 0), (["survived", "reset"], 4), (["closed"], 4),
    (["no answer", "unreachable"], 4), (["survived", "unreachable"], 3)])
def test_exit_code(outcomes: list[str], code: int) -> None:
    assert probe.Report(tuple(_result(o) for o in outcomes)).exit_code == code
