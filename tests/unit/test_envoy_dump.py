"""Parser behaviour on small hand-shaped documents; tests/golden holds real Envoy dumps."""

from __future__ import annotations

import base64
import json
import re
import struct
from typing import Any

import pytest

from kubectl_keepalive.envoy import envoy_dump, sockopts
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
                                         "HttpConnectionManager", "stat_prefix": "x" * 1000,
                                "route_config": {"name": "r", "virtual_hosts": [{"name": "v"}]},
                                "http_filters": [{"name": "router"}]}},
                                {"name": "tls", "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters."
                                             "listener.tls_inspector.v3.TlsInspector"}}]}]}
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
    # The connection manager is kept as its type and stat prefix alone (the in-flight split
    # reads them from this parse); its routes and HTTP filters, and other filters, are gone.
    hcm = listener("a", 1)["filter_chains"][0]["filters"][0]["typed_config"]
    assert kept["filter_chains"] == [{"filters": [
        {"name": "hcm", "typed_config": {"@type": hcm["@type"], "stat_prefix": "x" * 1000}},
        {"name": "tls", "typed_config": {}}]}]


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b'"text"', b'{"foo": 1}', b"42"])
def test_garbage_is_a_usage_error(raw: bytes) -> None:
    with pytest.raises(UsageError):
        envoy_dump.parse(raw)


def test_empty_but_valid_documents_have_no_listeners() -> None:
    assert envoy_dump.parse(b'{"configs": []}') == []
    assert envoy_dump.parse(b"[]") == []


# -- every encoding of keepalive, through the one reader (sockopts.listener_keepalive) --------


def _keepalive(body: dict[str, Any]) -> tuple[bool, int | None, int | None, int | None]:
    (only,) = envoy_dump.parse(json.dumps([{"name": "l", **body}]))
    ka = sockopts.listener_keepalive(only)
    return ka.enabled, ka.idle, ka.interval, ka.probes


TCP = {"address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}}}


def test_tcp_keepalive_field_in_both_spellings() -> None:
    snake = {**TCP, "tcp_keepalive": {"keepalive_time": 100, "keepalive_interval": 20,
                                      "keepalive_probes": 4}}
    camel = {"address": {"socketAddress": {"portValue": 8080}},
             "tcpKeepalive": {"keepaliveTime": 100, "keepaliveInterval": 20,
                              "keepaliveProbes": 4}}
    assert _keepalive(snake) == _keepalive(camel) == (True, 100, 20, 4)
    # An empty message still sets SO_KEEPALIVE: the kernel's timers (measured, Envoy 1.40).
    assert _keepalive({**TCP, "tcp_keepalive": {}}) == (True, None, None, None)


def test_socket_options_win_over_tcp_keepalive() -> None:
    body = {**TCP, "tcp_keepalive": {"keepalive_time": 100},
            "socket_options": [{"level": "1", "name": "9", "int_value": "1"},
                               {"level": "6", "name": "4", "int_value": "50"}]}
    assert _keepalive(body) == (True, 50, None, None)
    off = {**TCP, "tcp_keepalive": {"keepalive_time": 100},
           "socket_options": [{"level": "1", "name": "9", "int_value": "0"}]}
    assert _keepalive(off)[0] is False


def test_buf_value_is_a_little_endian_int() -> None:
    body = {**TCP, "socket_options": [
        {"level": "1", "name": "9", "buf_value": base64.b64encode(struct.pack("<i", 1)).decode()},
        {"level": "6", "name": "4", "bufValue": base64.b64encode(struct.pack("<i", 45)).decode()},
    ]}
    assert _keepalive(body) == (True, 45, None, None)
    short = {**TCP, "socket_options": [{"level": "1", "name": "9", "buf_value": "AQ=="}]}
    assert _keepalive(short)[0] is False  # one byte: setsockopt refuses it


def test_datagram_options_do_not_reach_tcp_sockets() -> None:
    body = {**TCP, "socket_options": [
        {"level": "1", "name": "9", "int_value": "1", "type": {"stream": {}}},
        {"level": "6", "name": "4", "int_value": "33", "type": {"datagram": {}}},
        {"level": "6", "name": "5", "int_value": "7", "type": {"stream": {}}},
    ]}
    assert _keepalive(body) == (True, None, 7, None)


def test_udp_pipe_and_internal_listeners() -> None:
    doc = [{"name": "udp", "address": {"socket_address": {"protocol": "UDP", "port_value": 443}},
            "socket_options": [{"level": "6", "name": "4", "int_value": "9"}]},
           {"name": "pipe", "address": {"pipe": {"path": "/tmp/x"}}},
           {"name": "internal", "address": {"envoy_internal_address": {
               "server_listener_name": "x"}}},
           {"name": "nameless-internal", "internal_listener": {}}]
    got = {lst.name: lst for lst in envoy_dump.parse(json.dumps(doc))}
    assert {n: lst.protocol for n, lst in got.items()} == {
        "udp": "UDP", "pipe": "PIPE", "internal": "INTERNAL", "nameless-internal": "INTERNAL"}
    assert not any(sockopts.listener_keepalive(lst).enabled for lst in got.values())
    assert any("UDP listener" in n for n in sockopts.listener_notes(got["udp"]))
    stream_only = [{"name": "udp", "address": {"socket_address": {"protocol": "UDP"}},
                    "socket_options": [{"level": 6, "name": 4, "int_value": 9,
                                        "type": {"stream": {}}}]}]
    (udp,) = envoy_dump.parse(json.dumps(stream_only))
    assert sockopts.listener_notes(udp) == []  # typed for TCP sockets only: never reaches UDP


def test_additional_addresses_inherit_or_override() -> None:
    ka = [{"level": "1", "name": "9", "int_value": "1"},
          {"level": "6", "name": "4", "int_value": "61"}]

    def extra(host: str, **override: Any) -> dict[str, Any]:
        return {"address": {"socket_address": {"address": host, "port_value": 8080}},
                **override}

    body = {**TCP, "tcp_keepalive": {"keepalive_time": 100}, "socket_options": ka,
            "additional_addresses": [
                extra("10.0.0.2"),
                extra("10.0.0.3", socket_options={}),  # empty override: no options
                extra("10.0.0.4", socket_options={"socket_options": [
                    {"level": "1", "name": "9", "int_value": "0"}]}),
                extra("10.0.0.5", socket_options={}, tcp_keepalive={"keepalive_time": 200}),
            ]}
    (only,) = envoy_dump.parse(json.dumps([{"name": "l", **body}]))
    got = [(a.address, sockopts.address_keepalive(only, a).idle,
            sockopts.address_keepalive(only, a).enabled) for a in only.additional_addresses]
    assert sockopts.listener_keepalive(only).idle == 61
    # Values measured with Envoy 1.40 and `ss` (tests/envoy/test_keepalive_encodings.py).
    assert got == [("10.0.0.2", 61, True), ("10.0.0.3", 100, True), ("10.0.0.4", None, False),
                   ("10.0.0.5", 200, True)]


# -- shapes: every wrong input is a UsageError naming the field -------------------------------


@pytest.mark.parametrize(("doc", "field"), [
    ({"dynamic_listeners": 5}, "dynamic_listeners: expected a list, got a number"),
    ({"configs": [{"dynamic_listeners": [{}, {}, {"active_state": {"listener": {
        "name": "x", "address": "0.0.0.0:80"}}}]}]},
     "configs[0].dynamic_listeners[2].active_state.listener.address: expected an object, "
     "got a string"),
    ([{"name": "x", "socket_options": 3}], "[0].socket_options: expected a list, got a number"),
    ([{"name": "x", "socket_options": [[]]}], "[0].socket_options[0]: expected an object"),
    ([{"name": "x", "address": {"socket_address": {"port_value": "9" * 5000}}}],
     "[0].address.socket_address.port_value: 999"),
    ([{"name": "x", "address": {"socket_address": {"port_value": 70000}}}], "out of range"),
    ([{"name": "x", "address": {"socket_address": {"port_value": 80.5}}}],
     "port_value: expected an integer, got 80.5"),
    ([{"name": "x", "tcp_keepalive": {"keepalive_time": -1}}], "keepalive_time: -1 is out"),
    ([{"name": "x", "socket_options": [{"buf_value": "%%%"}]}], "buf_value: not base64"),
    ([{"name": "x", "socket_options": [{"state": "LATER"}]}], "state: expected one of"),
    ([{"name": 5}], "[0].name: expected a string, got a number"),
    ([{"name": "x", "additional_addresses": [{"socket_options": []}]}],
     "[0].additional_addresses[0].socket_options: expected an object, got a list"),
    ({"static_listeners": [{"listener": []}]}, "static_listeners[0].listener: expected an object"),
    ({"dynamic_listeners": [{"error_state": {"details": 7}}]},
     "dynamic_listeners[0].error_state.details: expected a string"),
])
def test_wrong_shapes_name_the_field(doc: Any, field: str) -> None:
    with pytest.raises(UsageError, match=re.escape(field)):
        envoy_dump.parse(json.dumps(doc))


@pytest.mark.parametrize(("raw", "why"), [
    (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    (b'{"configs": [' + b"9" * 5000 + b"]}", "digits"),
    (b'[{"name": "x", "address": {"socket_address": {"port_value": Infinity}}}]',
     "Infinity is not a JSON number"),
    (b"[NaN]", "NaN is not a JSON number"),
    (b'[{"name": "x", "address": {"socket_address": {"port_value": 1e400}}}]',
     "port_value: expected an integer, got inf"),
    (b'["\xff"]', "not UTF-8"),
    (b"", "Expecting value"),
])
def test_hostile_documents_are_usage_errors(raw: bytes, why: str) -> None:
    with pytest.raises(UsageError, match=re.escape(why)):
        envoy_dump.parse(raw)


def test_an_empty_object_is_a_proxy_without_dynamic_listeners() -> None:
    # Envoy admin answers `{}` to ?resource=dynamic_listeners when there are none yet.
    assert envoy_dump.parse("{}\n") == []
    assert envoy_dump.parse(b" {} ") == []
    with pytest.raises(UsageError, match="no listener config found"):
        envoy_dump.parse('{"unrelated": 1}')
