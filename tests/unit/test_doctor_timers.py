"""Timers read out of real Envoy config dumps (tests/golden/doctor) and hand-shaped ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kubectl_keepalive.doctor import timers
from kubectl_keepalive.doctor.timers import Counts, PortTimers, State
from kubectl_keepalive.errors import UsageError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "doctor"
SCENARIOS = ("istio-gateway", "edge-gateway", "istio-edge-gateway", "tcp-passthrough",
             "envoy-defaults")


def flatten(port: PortTimers) -> dict[str, Any]:
    """A PortTimers as the hand-written `<scenario>.expected.json` files spell it."""
    flat: dict[str, Any] = {}
    for chain in port.chains:
        for t in chain.timers:
            flat[f"{chain.kind}:{t.name}"] = [t.seconds, t.state.value]
        clusters = list(chain.clusters)
        for route in chain.routes:
            key = f"route {route.route_config}/{route.virtual_host}/{route.name}"
            flat[f"{key}:origin"] = route.origin
            flat[f"{key}:num_retries"] = route.num_retries
            for t in route.timers:
                flat[f"{key}:{t.name}"] = [t.seconds, t.state.value]
            clusters.extend(route.clusters)
        for cluster in clusters:
            for t in cluster.timers:
                flat[f"cluster {cluster.name}:{t.name}"] = [t.seconds, t.state.value]
            upstream = cluster.tcp_keepalive
            if upstream is not None:
                flat[f"cluster {cluster.name}:tcp_keepalive"] = {
                    "time": upstream.time, "interval": upstream.interval,
                    "probes": upstream.probes}
    ka = port.keepalive
    return {"listener": port.listener,
            "keepalive": {"enabled": ka.enabled, "idle": ka.idle, "interval": ka.interval,
                          "probes": ka.probes},
            "timers": flat}


def golden_dump(name: str, directory: Path = GOLDEN) -> str:
    return (directory / f"{name}.config_dump.json").read_text()


def expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / f"{name}.expected.json").read_text())
    return data


def read_golden(name: str, directory: Path = GOLDEN) -> PortTimers:
    raw = golden_dump(name, directory)
    (port,) = timers.ports(raw)  # each scenario has one listener on an ephemeral port
    return timers.read_port(raw, port)


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden_dump_timers(name: str) -> None:
    assert flatten(read_golden(name)) == expected(name)


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k)
                if re.fullmatch(r"[a-z_]+", k) else k: _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def test_camel_case_dump_reads_the_same() -> None:
    raw = json.loads(golden_dump("istio-gateway"))
    (port,) = timers.ports(raw)
    assert flatten(timers.read_port(_camel(raw), port)) == expected("istio-gateway")


def _dump(listener: dict[str, Any], routes: list[dict[str, Any]] | None = None,
          clusters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
         "dynamic_listeners": [{"name": listener["name"], "active_state": {"listener": listener}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
         "dynamic_route_configs": [{"route_config": r} for r in routes or []]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
         "dynamic_active_clusters": [{"cluster": c} for c in clusters or []]},
    ]}


def _hcm_listener(port: int, **hcm: Any) -> dict[str, Any]:
    return {"name": f"0.0.0.0_{port}",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": {"@type": "type.googleapis.com/" +
                                                             timers.HCM_TYPE, **hcm}}]}]}


def test_rds_missing_from_dump_is_flagged() -> None:
    dump = _dump(_hcm_listener(8080, rds={"route_config_name": "http.8080"}))
    (chain,) = timers.read_port(dump, 8080).chains
    assert chain.missing_routes and chain.route_config_name == "http.8080" and not chain.routes


def test_route_level_overrides_and_vhost_retry_policy() -> None:
    route_config = {"name": "http.80", "virtual_hosts": [{
        "name": "vh", "domains": ["*"],
        "retry_policy": {"retry_on": "5xx", "per_try_timeout": "0.250s"},
        "routes": [{"match": {"path": "/x"}, "route": {
            "weighted_clusters": {"clusters": [{"name": "a", "weight": 1},
                                               {"name": "b", "weight": 1}]},
            "idle_timeout": "0s",
            "max_stream_duration": {"max_stream_duration": "120s"}}},
            {"match": {"prefix": "/"}, "redirect": {"path_redirect": "/x"}}]}]}
    dump = _dump(_hcm_listener(80, rds={"route_config_name": "http.80"}), [route_config],
                 [{"name": "a", "connect_timeout": "1s"}])
    (chain,) = timers.read_port(dump, 80).chains
    (route,) = chain.routes  # the redirect has no upstream timers
    assert route.overrides_stream_idle and route.overrides_max_stream
    assert route.num_retries == 1  # RetryPolicy.num_retries defaults to 1
    by_name = {t.name: t for t in route.timers}
    assert by_name["idle_timeout"].state is State.DISABLED
    assert by_name["per_try_timeout"].seconds == 0.25
    assert by_name["per_try_timeout"].path.endswith(
        "virtual_hosts[vh].retry_policy.per_try_timeout")
    assert by_name["max_stream_duration"].seconds == 120
    assert [(c.name, c.found) for c in route.clusters] == [("a", True), ("b", False)]
    assert route.match == "path /x"


def test_classification_of_counts() -> None:
    port = read_golden("edge-gateway")
    kinds = {t.name: t.counts for t in port.chains[0].timers}
    assert kinds["stream_idle_timeout"] is Counts.DATA
    assert kinds["idle_timeout"] is Counts.IDLE_CONNECTION
    assert kinds["request_timeout"] is Counts.ABSOLUTE
    assert kinds["max_connection_duration"] is Counts.DRAIN


def test_errors() -> None:
    with pytest.raises(UsageError, match="no active TCP listener on port 9"):
        timers.read_port(golden_dump("edge-gateway"), 9)
    with pytest.raises(UsageError, match="not a JSON config dump"):
        timers.read_port("{", 80)
    with pytest.raises(UsageError, match="configs"):
        timers.read_port("[]", 80)


@pytest.mark.parametrize(("text", "seconds"), [
    ("3600s", 3600.0), ("0.250s", 0.25), ("0s", 0.0), ("5", None), (None, None),
    ({"seconds": "5", "nanos": 500000000}, 5.5)])
def test_parse_duration(text: Any, seconds: float | None) -> None:
    assert timers.parse_duration(text) == seconds
