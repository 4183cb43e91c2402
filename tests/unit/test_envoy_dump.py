"""Parser behaviour on small hand-shaped documents; tests/golden holds real Envoy dumps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubectl_keepalive import envoy_dump
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import ListenerState

OPTIONS = [{"level": "1", "name": "9", "int_value": "1"},
           {"level": "6", "name": "4", "int_value": "7"}]


def listener(name: str, port: int, udp: bool = False, options: Any = None) -> dict[str, Any]:
    address: dict[str, Any] = {"address": "0.0.0.0", "port_value": port}
    if udp:
        address["protocol"] = "UDP"
    body: dict[str, Any] = {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                            "name": name, "address": {"socket_address": address},
                            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters."
                                         "network.http_connection_manager.v3."
                                         "HttpConnectionManager", "stat_prefix": "x" * 1000}}]}]}
    if options:
        body["socket_options"] = options
    return body


def test_states_are_kept_apart_and_sorted() -> None:
    dump = {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "x": [1, 2]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
         "static_listeners": [{"listener": listener("health", 15021)}],
         "dynamic_listeners": [
             {"name": "0.0.0.0_8080",
              "active_state": {"listener": listener("0.0.0.0_8080", 8080)},
              "warming_state": {"listener": listener("0.0.0.0_8080", 8080, options=OPTIONS)},
              "error_state": {"failed_configuration": listener("0.0.0.0_8080", 8080),
                              "details": "bad socket option"}},
             {"name": "udp_0.0.0.0_443",
              "active_state": {"listener": listener("udp_0.0.0.0_443", 443, udp=True)}},
         ]}]}
    got = envoy_dump.parse(json.dumps(dump))
    summary = [(lst.name, lst.port, lst.protocol, lst.state, lst.static, lst.error)
               for lst in got]
    assert summary == [
        ("udp_0.0.0.0_443", 443, "UDP", ListenerState.ACTIVE, False, None),
        ("0.0.0.0_8080", 8080, "TCP", ListenerState.ACTIVE, False, None),
        ("0.0.0.0_8080", 8080, "TCP", ListenerState.WARMING, False, None),
        ("0.0.0.0_8080", 8080, "TCP", ListenerState.REJECTED, False, "bad socket option"),
        ("health", 15021, "TCP", ListenerState.ACTIVE, True, None),
    ]
    assert [(o.level, o.name, o.int_value) for o in got[2].options] == [(1, 9, 1), (6, 4, 7)]


def test_istioctl_camel_case_list() -> None:
    doc = [{"name": "0.0.0.0_8080", "address": {"socketAddress": {"address": "0.0.0.0",
                                                                   "portValue": 8080}},
            "socketOptions": [{"level": "1", "name": "9", "intValue": "1"}]}]
    (only,) = envoy_dump.parse(json.dumps(doc).encode())
    assert (only.port, only.state, only.options[0].int_value) == (8080, ListenerState.ACTIVE, 1)


def test_resource_form_of_the_admin_dump() -> None:
    doc = {"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump.DynamicListener",
        "name": "0.0.0.0_80", "active_state": {"listener": listener("0.0.0.0_80", 80)}}]}
    assert [lst.name for lst in envoy_dump.parse(json.dumps(doc))] == ["0.0.0.0_80"]


def test_unneeded_objects_are_dropped_while_decoding() -> None:
    loaded = envoy_dump.load(json.dumps({"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
        "dynamic_listeners": [{"name": "a", "active_state": {"listener": listener("a", 1)}}]}]}))
    kept = loaded["configs"][0]["dynamic_listeners"][0]["active_state"]["listener"]
    assert kept["filter_chains"] == [{}]


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b'"text"', b'{"foo": 1}', b"42"])
def test_garbage_is_a_usage_error(raw: bytes) -> None:
    with pytest.raises(UsageError):
        envoy_dump.parse(raw)


def test_empty_but_valid_documents_have_no_listeners() -> None:
    assert envoy_dump.parse(b'{"configs": []}') == []
    assert envoy_dump.parse(b"[]") == []
