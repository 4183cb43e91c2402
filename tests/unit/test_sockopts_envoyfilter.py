from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kubectl_keepalive.envoy import sockopts
from kubectl_keepalive.istio import envoyfilter
from kubectl_keepalive.model import Gateway, KeepaliveSettings, Pod, SocketOption

SETTINGS = KeepaliveSettings(idle=60, interval=10, probes=3)
GATEWAY = Gateway(
    "istio-system",
    "istio-ingressgateway",
    {"app": "istio-ingressgateway", "istio": "ingressgateway"},
    None,
    (Pod("istio-system", "gw-1", {"app": "istio-ingressgateway", "istio": "ingressgateway"}),),
)


def test_wanted_options_are_the_four_linux_keepalive_options() -> None:
    options = sockopts.wanted_options(SETTINGS)
    assert [(o.level, o.name, o.int_value) for o in options] == [
        (1, 9, 1), (6, 4, 60), (6, 5, 10), (6, 6, 3)]
    assert {o.state for o in options} == {"STATE_PREBIND"}


def test_keepalive_off_when_so_keepalive_absent_or_zero() -> None:
    assert not sockopts.keepalive_of([]).enabled
    off = sockopts.keepalive_of([SocketOption(1, 9, 0), SocketOption(6, 4, 5)])
    assert (off.enabled, off.idle, off.interval, off.probes) == (False, None, None, None)


def test_so_keepalive_without_timers_leaves_numbers_null() -> None:
    ka = sockopts.keepalive_of([SocketOption(1, 9, 1)])
    assert (ka.enabled, ka.idle, ka.interval, ka.probes) == (True, None, None, None)


def test_duplicates_are_flagged_and_the_last_option_wins() -> None:
    first = sockopts.wanted_options(KeepaliveSettings(30, 5, 2))
    second = sockopts.wanted_options(SETTINGS)
    ka = sockopts.keepalive_of(envoyfilter.predict_merge(first, [second]))
    assert ka.duplicated
    assert (ka.idle, ka.interval, ka.probes) == (60, 10, 3)


def test_rendered_filter_is_a_gateway_listener_merge_per_port() -> None:
    doc = envoyfilter.render("istio-system", "istio-ingressgateway", GATEWAY.selector, None,
                             [envoyfilter.PortTarget(8443), envoyfilter.PortTarget(8080)],
                             SETTINGS)
    assert doc["apiVersion"] == "networking.istio.io/v1alpha3"
    assert doc["metadata"] == {
        "name": "keepalive-istio-ingressgateway",
        "namespace": "istio-system",
        "labels": {"app.kubernetes.io/managed-by": "kubectl-keepalive"},
    }
    assert doc["spec"]["workloadSelector"] == {"labels": GATEWAY.selector}
    patches = doc["spec"]["configPatches"]
    assert [p["match"] for p in patches] == [
        {"context": "GATEWAY", "listener": {"portNumber": 8080}},
        {"context": "GATEWAY", "listener": {"portNumber": 8443}},
    ]
    for patch in patches:
        assert patch["applyTo"] == "LISTENER"
        assert patch["patch"]["operation"] == "MERGE"
        values = [(o["level"], o["name"], o["int_value"], o["state"])
                  for o in patch["patch"]["value"]["socket_options"]]
        assert values == [(1, 9, 1, "STATE_PREBIND"), (6, 4, 60, "STATE_PREBIND"),
                          (6, 5, 10, "STATE_PREBIND"), (6, 6, 3, "STATE_PREBIND")]


def test_revision_label_and_listener_name_when_quic_shares_the_port() -> None:
    doc = envoyfilter.render("gw", "gw-canary", {"app": "gw"}, "canary",
                             [envoyfilter.PortTarget(443, "0.0.0.0_443")], SETTINGS)
    assert doc["metadata"]["labels"]["istio.io/rev"] == "canary"
    assert doc["spec"]["configPatches"][0]["match"]["listener"] == {
        "portNumber": 443, "name": "0.0.0.0_443"}


@given(st.integers(1, 32767), st.integers(1, 32767), st.integers(1, 127))
def test_settings_round_trip_through_the_rendered_filter(idle: int, interval: int,
                                                         probes: int) -> None:
    settings = KeepaliveSettings(idle, interval, probes)
    doc = envoyfilter.render("ns", "gw", {"a": "b"}, None, [envoyfilter.PortTarget(80)],
                             settings)
    assert envoyfilter.settings_in(doc) == {80: settings}


def _foreign(namespace: str, selector: dict[str, str] | None, port: int | None,
             option_name: int = 9, context: str = "GATEWAY",
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    listener = {"portNumber": port} if port else {}
    spec: dict[str, Any] = {"configPatches": [{
        "applyTo": "LISTENER",
        "match": {"context": context, "listener": listener},
        "patch": {"operation": "MERGE", "value": {"socket_options": [
            {"level": 1 if option_name == 9 else 6, "name": option_name, "int_value": 1}]}},
    }]}
    if selector is not None:
        spec["workloadSelector"] = {"labels": selector}
    return {"metadata": {"namespace": namespace, "name": f"hand-{namespace}",
                         "labels": labels or {}}, "spec": spec}


def test_foreign_filters_found_by_namespace_selector_port_and_option() -> None:
    hits = envoyfilter.foreign_keepalive_filters(
        [_foreign("istio-system", {"istio": "ingressgateway"}, 8080)], GATEWAY, [8080],
        "istio-system")
    assert [str(h) for h in hits] == ["istio-system/hand-istio-system (ports 8080)"]
    # Root namespace without a selector reaches every proxy, and no port means every port.
    assert envoyfilter.foreign_keepalive_filters(
        [_foreign("istio-system", None, None)], GATEWAY, [8080], "istio-system")


def test_filters_that_cannot_reach_the_gateway_are_ignored() -> None:
    misses = [
        _foreign("other", None, 8080),  # neither root nor the gateway's namespace
        _foreign("istio-system", {"istio": "egressgateway"}, 8080),  # another workload
        _foreign("istio-system", None, 8443),  # another port
        _foreign("istio-system", None, 8080, option_name=1),  # TCP_NODELAY, not keepalive
        _foreign("istio-system", None, 8080, context="SIDECAR_INBOUND"),
        _foreign("istio-system", None, 8080, labels={"istio.io/rev": "canary"}),
        _foreign("istio-system", None, 8080,
                 labels={"app.kubernetes.io/managed-by": "kubectl-keepalive"}),
    ]
    assert envoyfilter.foreign_keepalive_filters(misses, GATEWAY, [8080], "istio-system") == []


def test_managed_name_fits_the_api_limit() -> None:
    assert envoyfilter.managed_name("gw") == "keepalive-gw"
    assert len(envoyfilter.managed_name("g" * 300)) <= 253


def _patch(value: dict[str, Any], port: int = 8080) -> dict[str, Any]:
    return {"spec": {"configPatches": [{
        "applyTo": "LISTENER", "match": {"context": "GATEWAY", "listener": {"portNumber": port}},
        "patch": {"operation": "MERGE", "value": value}}]}}


def test_settings_in_reads_every_encoding_with_the_listener_reader() -> None:
    camel_buf = {"socketOptions": [
        {"level": "1", "name": "9", "bufValue": "AQAAAA=="},
        {"level": "6", "name": "4", "intValue": "45"},
        {"level": "6", "name": "5", "intValue": "9"},
        {"level": "6", "name": "6", "intValue": "2"}]}
    assert envoyfilter.settings_in(_patch(camel_buf)) == {8080: KeepaliveSettings(45, 9, 2)}
    tcp = {"tcp_keepalive": {"keepalive_time": 30, "keepalive_interval": 5,
                             "keepalive_probes": 4}}
    assert envoyfilter.settings_in(_patch(tcp)) == {8080: KeepaliveSettings(30, 5, 4)}
    # Socket options are applied after tcp_keepalive, as on a live listener.
    both = {**tcp, "socket_options": [{"level": 6, "name": 4, "int_value": 11}]}
    assert envoyfilter.settings_in(_patch(both)) == {8080: KeepaliveSettings(11, 5, 4)}
    # Partial (kernel timers) and datagram-only options: not a full setting.
    partial = {"tcpKeepalive": {"keepaliveTime": 30}}
    assert envoyfilter.settings_in(_patch(partial)) == {8080: None}
    datagram = {"socket_options": [
        {"level": 1, "name": 9, "int_value": 1, "type": {"datagram": {}}}]}
    assert envoyfilter.settings_in(_patch(datagram)) == {8080: None}


def test_settings_in_skips_malformed_items_of_a_foreign_filter() -> None:
    junk = {"socket_options": ["x", {"level": "one"}, {"level": 1, "name": 9, "int_value": 1},
                               {"level": 6, "name": 4, "int_value": 20},
                               {"level": 6, "name": 5, "int_value": 5},
                               {"level": 6, "name": 6, "int_value": 3}],
            "tcp_keepalive": "soon"}
    assert envoyfilter.settings_in(_patch(junk)) == {8080: KeepaliveSettings(20, 5, 3)}


def test_listener_reader_sources_and_kernel_fields() -> None:
    ka = sockopts.keepalive_of([SocketOption(1, 9, 1), SocketOption(6, 5, 7)])
    assert ka.sources == ("socket_options",) and ka.kernel_fields == ("idle", "probes")
    assert ka.effective(sockopts.KERNEL_DEFAULTS) == KeepaliveSettings(7200, 7, 9)
    assert sockopts.describe_keepalive(ka) == "on 7200s/7s/x9 (kernel default idle, probes)"
    assert sockopts.describe_keepalive(sockopts.keepalive_of([SocketOption(1, 9, 1)])) == (
        "on 7200s/75s/x9 (kernel defaults)")
    assert sockopts.describe_keepalive(sockopts.keepalive_of([])) == "off"
