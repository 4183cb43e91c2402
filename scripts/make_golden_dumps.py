#!/usr/bin/env python3
"""Write the golden listener dumps under tests/golden/ by running the real Envoy.

Each case starts an Envoy (tests/support/envoy.py) with Istio-like gateway listeners: bootstrap
listeners 15021/15090 as static ones, gateway listeners from a file-based LDS, then applies the
updates that produce the state under test (keepalive merged in, a warming or a rejected version).
For each case it writes:
  config_dump.json  GET /config_dump?mask=dynamic_listeners,static_listeners (what istioctl reads)
  expected.json     the normalised listeners, written by hand below from reading the dump
  input/            the bootstrap and each LDS file given to Envoy, in order
The istioctl case is derived from another case's real dump (see `to_istioctl`).

Every TCP listener has `bind_to_port: false`: the dump keeps Istio's 0.0.0.0 addresses and
ports 80/443/8080/8443 without binding anything on this machine. Envoy validates and stores the
listener (socket options included) all the same. Envoy refuses that on UDP, so the QUIC
listener binds 127.0.0.1:443/udp for the few seconds of its case.

Usage: python3 scripts/make_golden_dumps.py [--out DIR] [--case NAME]...
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.envoy import LISTENER_TYPE, Envoy, Outcome, find_envoy  # noqa: E402

Json = dict[str, Any]
MASK = "mask=dynamic_listeners,static_listeners"
FIXED_TIME = "2026-01-01T00:00:00Z"
CERT_PLACEHOLDER = "<throwaway self-signed certificate, generated anew on every run>"

# -- listener building blocks (shaped like what istiod sends a gateway) ------------------------

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def opt(level: int, name: int, value: int) -> Json:
    """A SocketOption as the EnvoyFilter's MERGE writes it (int64 as strings, PREBIND)."""
    return {"level": str(level), "name": str(name), "int_value": str(value),
            "state": "STATE_PREBIND"}


def keepalive(idle: int | None, interval: int | None, probes: int | None) -> list[Json]:
    options = [opt(1, 9, 1)]
    for name, value in ((4, idle), (5, interval), (6, probes)):
        if value is not None:
            options.append(opt(6, name, value))
    return options


def buf_opt(level: int, name: int, value: int) -> Json:
    """The same option with its value as bytes: the C int setsockopt gets, little-endian."""
    return {"level": str(level), "name": str(name),
            "buf_value": base64.b64encode(struct.pack("<i", value)).decode(),
            "state": "STATE_PREBIND"}


def typed(option: Json, kind: str) -> Json:
    """An option for one socket type only: "stream" (TCP) or "datagram" (UDP)."""
    return {**option, "type": {kind: {}}}


def tcp_keepalive(time_s: int | None = None, interval: int | None = None,
                  probes: int | None = None) -> Json:
    """Envoy >= 1.37 Listener.tcp_keepalive (core.v3.TcpKeepalive, seconds)."""
    fields = (("keepalive_time", time_s), ("keepalive_interval", interval),
              ("keepalive_probes", probes))
    return {key: value for key, value in fields if value is not None}


def extra_address(host: str, port: int, **overrides: Any) -> Json:
    """An entry of Listener.additional_addresses, with its own socket_options (a
    SocketOptionsOverride: `{}` means no options) or tcp_keepalive when given."""
    return {"address": {"socket_address": {"address": host, "port_value": port}}, **overrides}


def address(port: int, protocol: str = "TCP") -> Json:
    if protocol == "UDP":
        # Envoy refuses bind_to_port false on UDP listeners, so this one really binds: loopback.
        return {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": port}}
    return {"socket_address": {"address": "0.0.0.0", "port_value": port}}


def cluster_name(port: int, host: str) -> str:
    return f"outbound|{port}||{host}"


def hcm(stat_prefix: str, routes: Json, codec: str | None = None) -> Json:
    config: Json = {"@type": HCM_TYPE, "stat_prefix": stat_prefix, **routes,
                    "http_filters": [ROUTER], "stream_idle_timeout": "0s"}
    if codec is not None:
        config["codec_type"] = codec
        config["http3_protocol_options"] = {}
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def inline_routes(name: str, cluster: str) -> Json:
    return {"route_config": {"name": name, "validate_clusters": False, "virtual_hosts": [{
        "name": "httpbin.example.com:80", "domains": ["httpbin.example.com"],
        "routes": [{"match": {"prefix": "/"},
                    "route": {"cluster": cluster, "timeout": "0s"}}]}]}}


def rds_routes(name: str) -> Json:
    """RDS from a control plane that never answers: the listener stays warming."""
    return {"rds": {"route_config_name": name, "config_source": {
        "resource_api_version": "V3",
        "initial_fetch_timeout": "0s",  # wait forever instead of giving up after 15 s
        "api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                              "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}}}}


def http_listener(port: int, routes: Json | None = None,
                  options: list[Json] | None = None, **extra: Any) -> Json:
    name = f"0.0.0.0_{port}"
    listener: Json = {
        "name": name, "address": address(port), "bind_to_port": False,
        "filter_chains": [{"filters": [hcm(f"outbound_{name}", routes or inline_routes(
            f"http.{port}", cluster_name(8000, "httpbin.default.svc.cluster.local")))]}],
        "traffic_direction": "OUTBOUND", **extra,
    }
    if options:
        listener["socket_options"] = options
    return listener


def passthrough_listener(port: int, options: list[Json] | None = None, **extra: Any) -> Json:
    """A TLS PASSTHROUGH gateway server: SNI match, then tcp_proxy."""
    name = f"0.0.0.0_{port}"
    listener: Json = {
        "name": name, "address": address(port), "bind_to_port": False,
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
                     "TlsInspector"}}],
        "filter_chains": [{
            "filter_chain_match": {"server_names": ["secure.example.com"]},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3."
                         "TcpProxy",
                "stat_prefix": cluster_name(443, "secure.default.svc.cluster.local"),
                "cluster": cluster_name(443, "secure.default.svc.cluster.local")}}]}],
        "traffic_direction": "OUTBOUND", **extra,
    }
    if options:
        listener["socket_options"] = options
    return listener


def tls_context(cert: Json, alpn: list[str]) -> Json:
    return {"common_tls_context": {"alpn_protocols": alpn, "tls_certificates": [{
        "certificate_chain": {"inline_string": cert["cert"]},
        "private_key": {"inline_string": cert["key"]}}]}}


def https_listener(port: int, cert: Json, options: list[Json] | None = None) -> Json:
    """A SIMPLE-TLS gateway server: TLS ends at the gateway, then HTTP."""
    name = f"0.0.0.0_{port}"
    listener: Json = {
        "name": name, "address": address(port), "bind_to_port": False,
        "filter_chains": [{
            "filter_chain_match": {"server_names": ["httpbin.example.com"]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                         "DownstreamTlsContext",
                **tls_context(cert, ["h2", "http/1.1"])}},
            "filters": [hcm(f"outbound_{name}", inline_routes(
                f"https.{port}.https.gateway.default",
                cluster_name(8000, "httpbin.default.svc.cluster.local")))]}],
        "traffic_direction": "OUTBOUND",
    }
    if options:
        listener["socket_options"] = options
    return listener


def quic_listener(port: int, cert: Json) -> Json:
    """Istio's HTTP/3 twin of an HTTPS server (PILOT_ENABLE_QUIC_LISTENERS): UDP, QUIC."""
    name = f"udp_0.0.0.0_{port}"
    return {
        "name": name, "address": address(port, "UDP"),
        "udp_listener_config": {"quic_options": {},
                                "downstream_socket_config": {"prefer_gro": True}},
        "filter_chains": [{
            "filter_chain_match": {"server_names": ["httpbin.example.com"]},
            "transport_socket": {"name": "envoy.transport_sockets.quic", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.quic.v3."
                         "QuicDownstreamTransport",
                "downstream_tls_context": tls_context(cert, ["h3"])}},
            "filters": [hcm(f"outbound_{name}", inline_routes(
                f"https.{port}.https.gateway.default",
                cluster_name(8000, "httpbin.default.svc.cluster.local")), codec="HTTP3")]}],
        "traffic_direction": "OUTBOUND",
    }


def bootstrap_listener(port: int, stat_prefix: str, path: str, cluster: str) -> Json:
    """Istio's bootstrap listeners (health 15021, prometheus 15090). Istio leaves them unnamed
    and Envoy then names them with a random UUID; ours are named so reruns stay identical."""
    return {
        "name": f"0.0.0.0_{port}", "address": address(port), "bind_to_port": False,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": HCM_TYPE, "stat_prefix": stat_prefix,
                             "http_filters": [ROUTER],
                             "route_config": {"virtual_hosts": [{
                                 "name": "backend", "domains": ["*"],
                                 "routes": [{"match": {"prefix": path},
                                             "route": {"cluster": cluster}}]}]}}}]}],
    }


def static_cluster(name: str, port: int, grpc: bool = False) -> Json:
    cluster: Json = {"name": name, "type": "STATIC", "connect_timeout": "0.250s",
                     "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                         {"endpoint": {"address": {"socket_address": {
                             "address": "127.0.0.1", "port_value": port}}}}]}]}}
    if grpc:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


ISTIO_BOOTSTRAP_LISTENERS = [
    bootstrap_listener(15021, "agent", "/healthz/ready", "agent"),
    bootstrap_listener(15090, "stats", "/stats/prometheus", "prometheus_stats"),
]
ISTIO_BOOTSTRAP_CLUSTERS = [
    # Nothing ever connects to these: no traffic is sent through the listeners.
    static_cluster("agent", 15020),
    static_cluster("prometheus_stats", 15000),
    # Port 9 (discard) has no listener here, so RDS requests to it fail and never answer.
    static_cluster("xds-grpc", 9, grpc=True),
]

# -- expected entries (the status contract), written by reading each dump ---------------------


KERNEL = {"idle": 7200, "interval": 75, "probes": 9}  # net.ipv4.tcp_keepalive_* defaults
Ka = tuple[int | None, int | None, int | None] | None


def keepalive_fields(ka: Ka) -> Json:
    idle, interval, probes = ka if ka is not None else (None, None, None)
    return {"enabled": ka is not None, "idle": idle, "interval": interval, "probes": probes}


def entry(name: str, port: int, state: str = "active", *, static: bool = False,
          protocol: str = "TCP", ka: Ka = None, duplicate: bool = False,
          error: str | None = None, sources: tuple[str, ...] | None = None,
          extra: tuple[tuple[str, int, Ka], ...] = ()) -> Json:
    fields = keepalive_fields(ka)
    kernel = {k: v for k, v in KERNEL.items() if ka is not None and fields[k] is None}
    return {"name": name, "port": port, "protocol": protocol, "state": state, "static": static,
            "keepalive": fields,
            "keepalive_from": list(sources if sources is not None
                                   else ("socket_options",) if ka is not None else ()),
            "kernel_defaults": kernel or None,
            "additional_addresses": [{"address": host, "port": p, "keepalive": keepalive_fields(k)}
                                     for host, p, k in extra],
            "duplicate_options": duplicate, "error": error}


BOOTSTRAP_ENTRIES = [entry("0.0.0.0_15021", 15021, static=True),
                     entry("0.0.0.0_15090", 15090, static=True)]
ON = (60, 10, 3)
REUSE_PORT_REJECTION = (
    "error adding listener: '0.0.0.0_8080' has duplicate address '0.0.0.0:8080' as existing "
    "listener, to check if the listener has duplicated addresses with other listeners or "
    "'enable_reuse_port' is set to 'false' for the listener")


def ordered(entries: list[Json]) -> list[Json]:
    return sorted(entries, key=lambda e: (e["port"], e["name"], e["state"]))


# -- running a case ---------------------------------------------------------------------------


@dataclass
class Run:
    """What a case did: the Envoy (while it runs) and every LDS body it was given."""

    envoy: Envoy
    lds: list[list[Json]] = field(default_factory=list)

    def set_listeners(self, listeners: list[Json], expect: Outcome = "success") -> None:
        self.lds.append(copy.deepcopy(listeners))
        self.envoy.set_listeners(listeners, expect=expect)


@dataclass(frozen=True)
class Case:
    name: str
    note: str
    initial: Callable[[Json], list[Json]]
    updates: Callable[[Run, Json], None]
    expected: list[Json]


def settle(envoy: Envoy, timeout: float = 20.0) -> str:
    """The listener dump once no version is draining (the drain time has run out)."""
    deadline = time.monotonic() + timeout
    while True:
        dump = envoy.config_dump(MASK)
        if '"draining_state"' not in dump or time.monotonic() > deadline:
            return dump
        time.sleep(0.2)


def throwaway_cert(workdir: Path) -> Json:
    """A self-signed cert for the TLS/QUIC listeners; it never leaves the temp dir."""
    key, crt = workdir / "key.pem", workdir / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=httpbin.example.com", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return {"cert": crt.read_text(), "key": key.read_text()}


def run_case(case: Case, workdir: Path) -> tuple[str, Json, list[list[Json]]]:
    cert = throwaway_cert(workdir)
    initial = case.initial(cert)
    envoy = Envoy(workdir / "envoy", static_listeners=ISTIO_BOOTSTRAP_LISTENERS,
                  static_clusters=ISTIO_BOOTSTRAP_CLUSTERS, listeners=initial)
    (workdir / "envoy").mkdir()
    with envoy:
        run = Run(envoy, [copy.deepcopy(initial)])
        case.updates(run, cert)
        dump = settle(envoy)
        return dump, envoy.bootstrap(), run.lds


# -- the cases --------------------------------------------------------------------------------


def no_updates(run: Run, cert: Json) -> None:
    del run, cert


def gateway(options_8080: list[Json] | None = None,
            options_8443: list[Json] | None = None) -> list[Json]:
    return [http_listener(8080, options=options_8080),
            passthrough_listener(8443, options=options_8443)]


def apply_keepalive(run: Run, cert: Json) -> None:
    # The filter arrives while the gateway runs: Envoy replaces both listeners (drains old).
    del cert
    run.set_listeners(gateway(keepalive(*ON), keepalive(*ON)))


def rejected_update(run: Run, cert: Json) -> None:
    del cert
    run.set_listeners([http_listener(8080, options=keepalive(*ON), enable_reuse_port=False),
                       passthrough_listener(8443, options=keepalive(*ON))],
                      expect="rejected")


def warming_update(run: Run, cert: Json) -> None:
    del cert
    run.set_listeners([
        http_listener(8080, routes=rds_routes("http.8080"), options=keepalive(*ON)),
        passthrough_listener(8443),
        http_listener(9080, routes=rds_routes("http.9080")),
    ])


def helm(cert: Json) -> list[Json]:
    return [http_listener(80, options=keepalive(*ON)),
            https_listener(443, cert, options=keepalive(*ON)),
            quic_listener(443, cert)]


CASES = [
    Case("ingressgateway-8080-off",
         "IstioOperator gateway (8080 HTTP, 8443 TLS passthrough), no socket options.",
         lambda cert: gateway(), no_updates,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080),
                  entry("0.0.0.0_8443", 8443)])),
    Case("ingressgateway-8080-on",
         "Same gateway, then an LDS update with keepalive 60/10/3 merged into both listeners.",
         lambda cert: gateway(), apply_keepalive,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080, ka=ON),
                  entry("0.0.0.0_8443", 8443, ka=ON)])),
    Case("ingressgateway-8080-on-duplicates",
         "Two MERGE filters: 8080 gets the same four options twice; 8443 gets ours (60/10/3) "
         "then a foreign filter's (300/75/9). Later options win, as the setsockopt calls do.",
         lambda cert: gateway(keepalive(*ON) + keepalive(*ON),
                              keepalive(*ON) + keepalive(300, 75, 9)),
         no_updates,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080, ka=ON, duplicate=True),
                  entry("0.0.0.0_8443", 8443, ka=(300, 75, 9), duplicate=True)])),
    Case("ingressgateway-8080-on-no-timers",
         "Only SO_KEEPALIVE on 8080 (kernel default timers apply); 8443 has none.",
         lambda cert: gateway(keepalive(None, None, None)), no_updates,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080, ka=(None, None, None)),
                  entry("0.0.0.0_8443", 8443)])),
    Case("helm-80-443-quic",
         "Helm istio/gateway: 80 HTTP and 443 SIMPLE TLS with keepalive, plus the QUIC "
         "listener udp_0.0.0.0_443 without options (TCP options do not belong on UDP).",
         helm, no_updates,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_80", 80, ka=ON),
                  entry("0.0.0.0_443", 443, ka=ON),
                  entry("udp_0.0.0.0_443", 443, protocol="UDP")])),
    Case("warming",
         "8080 active without options; its new version with keepalive waits for RDS that "
         "never answers (warming). 9080 is new and warming only. 8443 stays active.",
         lambda cert: gateway(), warming_update,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080),
                  entry("0.0.0.0_8080", 8080, "warming", ka=ON),
                  entry("0.0.0.0_8443", 8443),
                  entry("0.0.0.0_9080", 9080, "warming")])),
    Case("rejected",
         "8080 runs with enable_reuse_port false; the update adding keepalive is rejected "
         "(error_state) and the old version stays active. 8443's update is accepted.",
         lambda cert: [http_listener(8080, enable_reuse_port=False), passthrough_listener(8443)],
         rejected_update,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080),
                  entry("0.0.0.0_8080", 8080, "rejected", ka=ON, error=REUSE_PORT_REJECTION),
                  entry("0.0.0.0_8443", 8443, ka=ON)])),
]
# Envoy >= 1.37 encodings; each is also run with real sockets by tests/envoy (ss shows timers).
KEEPALIVE_ENCODING_CASES = [
    Case("tcp-keepalive",
         "Envoy >= 1.37 Listener.tcp_keepalive: 8080 gets 60/10/3 from tcp_keepalive alone; "
         "8443 has tcp_keepalive 100s and socket options SO_KEEPALIVE + TCP_KEEPIDLE 45: "
         "Envoy sets the socket options last, so 45s wins and the kernel keeps its interval "
         "and probe count.",
         lambda cert: [http_listener(8080, tcp_keepalive=tcp_keepalive(*ON)),
                       passthrough_listener(8443, options=[opt(1, 9, 1), opt(6, 4, 45)],
                                            tcp_keepalive=tcp_keepalive(100))],
         no_updates,
         ordered([*BOOTSTRAP_ENTRIES,
                  entry("0.0.0.0_8080", 8080, ka=ON, sources=("tcp_keepalive",)),
                  entry("0.0.0.0_8443", 8443, ka=(45, None, None),
                        sources=("tcp_keepalive", "socket_options"))])),
    Case("additional-addresses",
         "additional_addresses with their own overrides. 8080 (socket options 60/10/3): "
         "127.0.0.2 overrides them with 30/5/2, 127.0.0.3 has an empty override (no options: "
         "off). 8443 (tcp_keepalive 100/20/4): 127.0.0.2 overrides tcp_keepalive with 200s, "
         "127.0.0.3 overrides socket options with SO_KEEPALIVE=0 (set after tcp_keepalive: "
         "off).",
         lambda cert: [
             http_listener(8080, options=keepalive(*ON), additional_addresses=[
                 extra_address("127.0.0.2", 8080,
                               socket_options={"socket_options": keepalive(30, 5, 2)}),
                 extra_address("127.0.0.3", 8080, socket_options={})]),
             passthrough_listener(8443, tcp_keepalive=tcp_keepalive(100, 20, 4),
                                  additional_addresses=[
                 extra_address("127.0.0.2", 8443, tcp_keepalive=tcp_keepalive(200)),
                 extra_address("127.0.0.3", 8443,
                               socket_options={"socket_options": [opt(1, 9, 0)]})])],
         no_updates,
         ordered([*BOOTSTRAP_ENTRIES,
                  entry("0.0.0.0_8080", 8080, ka=ON, extra=(
                      ("127.0.0.2", 8080, (30, 5, 2)), ("127.0.0.3", 8080, None))),
                  entry("0.0.0.0_8443", 8443, ka=(100, 20, 4), sources=("tcp_keepalive",),
                        extra=(("127.0.0.2", 8443, (200, None, None)),
                               ("127.0.0.3", 8443, None)))])),
    Case("buf-value",
         "Socket options with buf_value (the int as little-endian bytes) on 8080: 60/10/3. "
         "8443 types them: SO_KEEPALIVE for stream sockets, TCP_KEEPIDLE 33 for datagram "
         "sockets only (never reaches TCP), TCP_KEEPINTVL 12 untyped: idle stays the kernel's.",
         lambda cert: [
             http_listener(8080, options=[buf_opt(1, 9, 1), buf_opt(6, 4, 60),
                                          buf_opt(6, 5, 10), buf_opt(6, 6, 3)]),
             passthrough_listener(8443, options=[typed(opt(1, 9, 1), "stream"),
                                                 typed(opt(6, 4, 33), "datagram"),
                                                 opt(6, 5, 12)])],
         no_updates,
         ordered([*BOOTSTRAP_ENTRIES, entry("0.0.0.0_8080", 8080, ka=ON),
                  entry("0.0.0.0_8443", 8443, ka=(None, 12, None))])),
]
CASES += KEEPALIVE_ENCODING_CASES
# SO_KEEPALIVE alone (kernel timers) is ingressgateway-8080-on-no-timers, also run with sockets.
SOCKET_CASES = [c.name for c in KEEPALIVE_ENCODING_CASES] + ["ingressgateway-8080-on-no-timers"]
ISTIOCTL_CASE = "istioctl-camelcase"
ISTIOCTL_SOURCE = "ingressgateway-8080-on"

# -- an independent reading of a dump, for the cross-check and the freshness test -------------


def listener_states(dump: Any) -> Iterator[tuple[str, bool, Json, str | None]]:
    """(state, static, listener, error) for every listener version in a dump.

    Reads only what the admin API documents (ListenersConfigDump); kept apart from the plugin's
    parser on purpose, so the goldens check the plugin rather than repeat it.
    """
    if isinstance(dump, list):  # istioctl: active listeners only, already unwrapped
        for listener in dump:
            yield "active", False, listener, None
        return
    for config in dump.get("configs", []):
        if not config.get("@type", "").endswith("ListenersConfigDump"):
            continue
        for static in config.get("static_listeners", []):
            yield "active", True, static["listener"], None
        for dynamic in config.get("dynamic_listeners", []):
            for key, state in (("active_state", "active"), ("warming_state", "warming"),
                               ("draining_state", "draining")):
                if key in dynamic:
                    yield state, False, dynamic[key]["listener"], None
            if "error_state" in dynamic:
                failed = dynamic["error_state"]
                yield "rejected", False, failed["failed_configuration"], failed["details"]


def _get(message: Json, field: str, default: Any = None) -> Any:
    """A field in Envoy's snake_case or in istioctl's camelCase spelling."""
    return message.get(field, message.get(camel(field), default))


def _options(raw: list[Json]) -> list[list[Any]]:
    """[level, name, value, type] per option; a buf_value is the C int setsockopt receives."""
    out: list[list[Any]] = []
    for o in raw:
        buf = _get(o, "buf_value")
        value = (struct.unpack("<i", base64.b64decode(buf)[:4])[0] if buf is not None
                 else int(_get(o, "int_value", 0)))
        kind = next(iter(o.get("type") or {}), None)
        out.append([int(o["level"]), int(o["name"]), value, kind])
    return out


def _tcp(raw: Json | None) -> list[int | None] | None:
    if raw is None:
        return None
    return [_get(raw, "keepalive_time"), _get(raw, "keepalive_interval"),
            _get(raw, "keepalive_probes")]


def summary(dump: Any) -> list[Json]:
    """Name, port, protocol, state, static flag, raw keepalive config and error per version."""
    seen: dict[tuple[str, str], Json] = {}
    for state, static, listener, error in listener_states(dump):
        socket: Json = _get(_get(listener, "address", {}), "socket_address", {})
        extra = []
        for item in _get(listener, "additional_addresses", []):
            override = _get(item, "socket_options")
            extra.append({
                "address": _get(_get(item, "address"), "socket_address")["address"],
                "port": _get(_get(_get(item, "address"), "socket_address"), "port_value"),
                "socket_options": None if override is None
                else _options(_get(override, "socket_options", [])),
                "tcp_keepalive": _tcp(_get(item, "tcp_keepalive"))})
        item: Json = {
            "name": listener["name"], "port": _get(socket, "port_value"),
            "protocol": socket.get("protocol", "TCP"), "state": state, "static": static,
            "socket_options": _options(_get(listener, "socket_options", [])),
            "tcp_keepalive": _tcp(_get(listener, "tcp_keepalive")),
            "additional_addresses": extra,
            "error": error}
        # Envoy 1.40 repeats a rejected version in a second, nameless dynamic entry.
        seen.setdefault((item["name"], state), item)
    return sorted(seen.values(), key=lambda s: (s["port"], s["name"], s["state"]))


def keepalive_seen(options: list[list[Any]],
                   tcp: list[int | None] | None = None) -> tuple[Json, bool, list[str]]:
    """Keepalive as the kernel ends up with it, duplicates, and what set it. Measured with
    Envoy 1.40: tcp_keepalive is applied first, then the socket options in order (the last
    setsockopt wins); datagram-typed options never reach a TCP socket."""
    keys = {(1, 9): "enabled", (6, 4): "idle", (6, 5): "interval", (6, 6): "probes"}
    last: Json = {}
    sources = []
    if tcp is not None:
        sources.append("tcp_keepalive")
        last["enabled"] = 1
        last.update({k: v for k, v in zip(("idle", "interval", "probes"), tcp, strict=True)
                     if v is not None})
    counted = [(level, name) for level, name, _, kind in options
               if (level, name) in keys and kind != "datagram"]
    if counted:
        sources.append("socket_options")
    last.update({keys[(level, name)]: value for level, name, value, kind in options
                 if (level, name) in keys and kind != "datagram"})
    enabled = bool(last.get("enabled"))
    seen: Json = {"enabled": enabled}
    seen.update({k: last.get(k) if enabled else None for k in ("idle", "interval", "probes")})
    return seen, len(counted) != len(set(counted)), sources


def _extra_seen(s: Json) -> list[Json]:
    out = []
    for extra in s["additional_addresses"]:
        options = s["socket_options"] if extra["socket_options"] is None \
            else extra["socket_options"]
        tcp = s["tcp_keepalive"] if extra["tcp_keepalive"] is None else extra["tcp_keepalive"]
        out.append({"address": extra["address"], "port": extra["port"],
                    "keepalive": keepalive_seen(options, tcp)[0]})
    return out


def check_expected(case: str, dump: Any, expected: list[Json]) -> None:
    """Fail generation when the hand-written expectation disagrees with what Envoy did."""
    found = [(s["name"], s["port"], s["protocol"], s["state"], s["static"], s["error"],
              *keepalive_seen(s["socket_options"], s["tcp_keepalive"]), _extra_seen(s))
             for s in summary(dump)]
    wanted = [(e["name"], e["port"], e["protocol"], e["state"], e["static"], e["error"],
               e["keepalive"], e["duplicate_options"], e["keepalive_from"],
               e["additional_addresses"]) for e in expected]
    if found != wanted:
        raise SystemExit(f"{case}: the dump does not have the expected listeners:\n"
                         f"  found  {found}\n  wanted {wanted}")


# -- writing ----------------------------------------------------------------------------------


def camel(key: str) -> str:
    """protojson's JSON name of a proto field: lowerCamelCase of the snake_case name."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_istioctl(dump: Json) -> list[Json]:
    """What `istioctl proxy-config listener POD -o json` prints for this dump.

    istioctl (istioctl/pkg/writer/envoy/configdump/listener.go) collects the active_state
    listener of each dynamic listener, then each static listener, unpacks them into typed
    Listener messages (so no top-level "@type") and marshals them with protojson: camelCase
    names; int64 values stay strings, as in Envoy's own dump. Only valid for listeners without
    map or Struct fields (their keys are data, not field names); ours have none.
    """
    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {(k if k.startswith("@") else camel(k)): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    listeners: list[Json] = []
    for config in dump["configs"]:
        for dynamic in config.get("dynamic_listeners", []):
            if "active_state" in dynamic:
                listeners.append(dynamic["active_state"]["listener"])
        listeners.extend(s["listener"] for s in config.get("static_listeners", []))
    return [convert({k: v for k, v in listener.items() if k != "@type"})
            for listener in listeners]


def scrub(text: str, workdir: Path) -> str:
    """Drop what changes on every run: timestamps, temp paths, the throwaway key pair."""
    text = re.sub(r'"(last_updated|last_update_attempt)": "[^"]*"', rf'"\1": "{FIXED_TIME}"',
                  text)
    text = text.replace(str(workdir), "<workdir>")
    return re.sub(r"-----BEGIN [A-Z ]+-----[^\"]*?-----END [A-Z ]+-----(\\n|\n)?",
                  CERT_PLACEHOLDER, text)


class _NoAliases(yaml.SafeDumper):
    """Shared building blocks would otherwise show up as YAML anchors in the input files."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_NoAliases, sort_keys=False, width=100)


def write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def write_case(out: Path, case: Case, workdir: Path) -> Json:
    dump_text, bootstrap, lds = run_case(case, workdir)
    dump: Json = json.loads(scrub(dump_text, workdir))
    check_expected(case.name, dump, case.expected)
    folder = out / case.name
    write_json(folder / "config_dump.json", dump)
    write_json(folder / "expected.json", {
        "source": f"Envoy {envoy_version()} admin GET /config_dump?{MASK}. {case.note}",
        "input": "config_dump.json",
        "listeners": case.expected})
    inputs = folder / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    for old in inputs.glob("*"):
        old.unlink()
    (inputs / "bootstrap.yaml").write_text(scrub(to_yaml(bootstrap), workdir))
    for number, listeners in enumerate(lds, start=1):
        # The body of the LDS file as Envoy read it (the helper writes it as JSON).
        body = {"version_info": str(number),
                "resources": [{"@type": LISTENER_TYPE, **x} for x in listeners]}
        (inputs / f"lds-{number}.yaml").write_text(scrub(to_yaml(body), workdir))
    return dump


def write_istioctl(out: Path, source_dump: Json) -> None:
    folder = out / ISTIOCTL_CASE
    listeners = to_istioctl(source_dump)
    # istioctl indents with four spaces (json.MarshalIndent).
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "listeners.json").write_text(json.dumps(listeners, indent=4) + "\n")
    source_case = next(c for c in CASES if c.name == ISTIOCTL_SOURCE)
    # istioctl has no static/dynamic distinction and only active versions.
    expected = [{**e, "static": False} for e in source_case.expected if e["state"] == "active"]
    check_expected(ISTIOCTL_CASE, listeners, expected)
    write_json(folder / "expected.json", {
        "source": f"Derived from ../{ISTIOCTL_SOURCE}/config_dump.json (a real Envoy dump) by "
                  "scripts/make_golden_dumps.py:to_istioctl, in the shape of `istioctl "
                  "proxy-config listener POD -o json`: active listeners only, camelCase. "
                  "istioctl does not tell static listeners apart, so `static` is false.",
        "input": "listeners.json",
        "listeners": expected})


README = """# Golden listener dumps

Written by `python3 scripts/make_golden_dumps.py` from a real Envoy; do not edit by hand.

Each folder holds:
- `config_dump.json`: the admin's `GET /config_dump?{mask}`;
- `expected.json`: the normalised listeners, ordered by port, name, state (`input` names the
  file to parse);
- `input/`: the bootstrap and each LDS file Envoy was given, in order.

`istioctl-camelcase/listeners.json` has the shape of `istioctl proxy-config listener -o json`,
derived from `{source}/config_dump.json`.

Scrubbed so reruns are identical: timestamps read {time}, temp paths read `<workdir>`, and
the throwaway TLS key pair is replaced by a placeholder (Envoy redacts the private key anyway).
TCP listeners use `bind_to_port: false`, so nothing is bound while generating; the QUIC listener
binds 127.0.0.1:443/udp for a moment, because Envoy refuses unbound UDP listeners.
"""


_VERSION: list[str] = []


def envoy_version() -> str:
    if not _VERSION:
        shown = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True,
                               check=True).stdout
        match = re.search(r"version: \S+?/(\d+\.\d+\.\d+)/", shown)
        _VERSION.append(match.group(1) if match else "unknown")
    return _VERSION[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "golden")
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES],
                        help="only these cases (default: all, plus the istioctl one)")
    args = parser.parse_args(argv)
    selected = [c for c in CASES if not args.case or c.name in args.case]
    dumps: dict[str, Json] = {}
    for case in selected:
        with tempfile.TemporaryDirectory(prefix=f"golden-{case.name}-") as scratch:
            dumps[case.name] = write_case(args.out, case, Path(scratch))
        print(f"wrote {args.out / case.name}", file=sys.stderr)
    if ISTIOCTL_SOURCE in dumps:
        write_istioctl(args.out, dumps[ISTIOCTL_SOURCE])
        print(f"wrote {args.out / ISTIOCTL_CASE}", file=sys.stderr)
    if not args.case:
        (args.out / "README-envoy-dumps.md").write_text(README.format(
            mask=MASK, source=ISTIOCTL_SOURCE, time=FIXED_TIME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
