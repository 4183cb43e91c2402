#!/usr/bin/env python3
"""Write tests/golden/stats-inflight/ by running the real Envoy with traffic in flight.

One Envoy (tests/support/envoy.py) gets two gateway-shaped listeners on loopback, as istiod
shapes them: HTTP (an HTTP connection manager, stat prefix `outbound_0.0.0.0_28080`) and a
passthrough one (tcp_proxy). Then, while the admin is read:
  28080: one idle keep-alive HTTP connection, two connections with a slow request in flight
  28443: one open passthrough connection
It writes:
  config_dump.json  GET /config_dump?resource=dynamic_listeners (what the plugin reads)
  stats.txt         GET the plugin's own filtered stats path (inflight.STATS_PATH)
  stats.json        the same filter with format=json
  expected.json     the counts above, written by hand (they are what was opened here)

Usage: python3 scripts/make_golden_stats.py [--out DIR]
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubectl_keepalive.envoy import inflight  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402

HTTP_PORT, TCP_PORT = 28080, 28443
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
TCP_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
EXPECTED = {
    str(HTTP_PORT): {"connections": 3, "requests": 2, "tcp_connections": 0},
    str(TCP_PORT): {"connections": 1, "requests": 0, "tcp_connections": 1},
}


class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            self.release.wait(30)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def static_cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}


def listeners(backend: int) -> list[dict[str, Any]]:
    del backend
    http_name, tcp_name = f"0.0.0.0_{HTTP_PORT}", f"0.0.0.0_{TCP_PORT}"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": HTTP_PORT}}
    routes = {"name": f"http.{HTTP_PORT}", "virtual_hosts": [{
        "name": "app", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"},
                    "route": {"cluster": "outbound|80||app", "timeout": "0s"}}]}]}
    return [
        {"name": http_name, "address": address, "traffic_direction": "OUTBOUND",
         "filter_chains": [{"filters": [{
             "name": "envoy.filters.network.http_connection_manager",
             "typed_config": {"@type": HCM_TYPE, "stat_prefix": f"outbound_{http_name}",
                              "route_config": routes, "stream_idle_timeout": "0s",
                              "http_filters": [{"name": "envoy.filters.http.router",
                                                "typed_config": {"@type": "type.googleapis.com/"
                                                                 "envoy.extensions.filters.http."
                                                                 "router.v3.Router"}}]}}]}]},
        {"name": tcp_name, "traffic_direction": "OUTBOUND",
         "address": {"socket_address": {"address": "127.0.0.1", "port_value": TCP_PORT}},
         "filter_chains": [{"filters": [{
             "name": "envoy.filters.network.tcp_proxy",
             "typed_config": {"@type": TCP_TYPE, "stat_prefix": "outbound|443||secure",
                              "cluster": "outbound|443||secure"}}]}]},
    ]


def send(port: int, path: str) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
    return conn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "golden" / "stats-inflight")
    args = parser.parse_args()
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = backend.server_address[1]
    echo = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(echo.accept()[0]), daemon=True).start()
    clusters = [static_cluster("outbound|80||app", port),
                static_cluster("outbound|443||secure", echo.getsockname()[1])]
    with tempfile.TemporaryDirectory() as tmp, Envoy(
            Path(tmp), listeners=listeners(port), static_clusters=clusters) as envoy:
        idle = send(HTTP_PORT, "/")
        idle.recv(1024)  # answered: the connection stays open, nothing in flight on it
        slow = [send(HTTP_PORT, "/slow"), send(HTTP_PORT, "/slow")]
        passthrough = socket.create_connection(("127.0.0.1", TCP_PORT), timeout=10)
        passthrough.sendall(b"hello")
        time.sleep(1.0)  # let Envoy open the upstreams and count
        dump = envoy.config_dump("resource=dynamic_listeners")
        text = envoy.get(inflight.STATS_PATH)
        as_json = envoy.get(inflight.STATS_PATH + "&format=json")
        Slow.release.set()
        for conn in [idle, passthrough, *slow]:
            conn.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config_dump.json").write_text(dump)
    (args.out / "stats.txt").write_text(text)
    (args.out / "stats.json").write_text(as_json)
    (args.out / "expected.json").write_text(json.dumps(EXPECTED, indent=2) + "\n")
    backend.shutdown()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
