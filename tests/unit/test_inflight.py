"""What is in flight: stats of a real Envoy (tests/golden/stats-inflight, written by
scripts/make_golden_stats.py), the plan's counts, --when-quiet, and status --sockets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubectl_keepalive.envoy import envoy_dump, inflight
from kubectl_keepalive.envoy.sockets import Connections, count_by_local_port
from kubectl_keepalive.errors import VerificationError
from kubectl_keepalive.model import Deployment, RolloutState
from kubectl_keepalive.usecases import drainplan
from tests.support.clock import FakeClock
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import env, ingress, run  # noqa: F401  (env is a fixture)

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "stats-inflight"
BUSY = "istio-system/istio-ingressgateway/8080"


def golden_prefixes() -> dict[int, inflight.Prefixes]:
    return inflight.listener_prefixes((GOLDEN / "config_dump.json").read_bytes())


def test_stat_prefixes_map_to_ports_from_a_real_dump() -> None:
    assert golden_prefixes() == {
        28080: inflight.Prefixes(http=("outbound_0.0.0.0_28080",)),
        28443: inflight.Prefixes(tcp=("outbound|443||secure",)),
    }


DUMPS = sorted(GOLDEN.parent.glob("*/*config_dump.json"))


@pytest.mark.parametrize("path", DUMPS, ids=[f"{p.parent.name}/{p.name}" for p in DUMPS])
def test_the_pruned_parse_gives_the_prefixes_of_the_whole_dump(path: Path) -> None:
    """status reads each pod's dump once (envoy_dump.load prunes what it never reads): the
    prefixes from that document are those of the whole JSON, for every real Envoy's dump."""
    raw = path.read_bytes()
    assert inflight.listener_prefixes(envoy_dump.load(raw)) == inflight.listener_prefixes(raw)


def test_the_pruned_parse_keeps_camel_case_prefixes() -> None:
    dump = {"configs": [{"dynamicListeners": [{"activeState": {"listener": {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "l",
        "address": {"socketAddress": {"address": "0.0.0.0", "portValue": 8080}},
        "filterChains": [{"filters": [{"name": "hcm", "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "statPrefix": "outbound_0.0.0.0_8080", "routeConfig": {"name": "big"}}}]}],
    }}}]}]}
    raw = json.dumps(dump).encode()
    assert inflight.listener_prefixes(envoy_dump.load(raw)) == inflight.listener_prefixes(raw) \
        == {8080: inflight.Prefixes(http=("outbound_0.0.0.0_8080",))}


@pytest.mark.parametrize("name", ["stats.txt", "stats.json"])
def test_counts_from_a_real_envoys_stats(name: str) -> None:
    stats = inflight.parse_stats((GOLDEN / name).read_bytes())
    loads = inflight.load_by_port(stats, golden_prefixes(), [28080, 28443, 9999])
    expected = json.loads((GOLDEN / "expected.json").read_text())
    assert {str(p): {"connections": v.connections, "requests": v.requests,
                     "tcp_connections": v.tcp_connections}
            for p, v in loads.items() if p != 9999} == expected
    assert loads[9999] == inflight.PortLoad(9999, 0, 0, 0)
    # The admin's own connection and per-worker copies are not counted twice.
    assert loads[28080].in_flight == 2 and loads[28443].in_flight == 1


def test_without_prefixes_every_connection_counts_as_in_flight() -> None:
    stats = inflight.parse_stats((GOLDEN / "stats.txt").read_text())
    assert inflight.load_by_port(stats, {}, [28080])[28080].in_flight == 3


def targets(fake: FakeCluster) -> list[tuple[drainplan.Target, list[int]]]:
    prefixes = {p: inflight.Prefixes(http=(f"outbound_0.0.0.0_{p}",)) for p in (8080, 8443)}
    pods = fake.list_pods("istio-system", "app=istio-ingressgateway")
    return [(drainplan.Target(pod, prefixes), [8080, 8443]) for pod in pods]


class CountingCluster(FakeCluster):
    """The fake, counting the reads a plan makes of it."""

    def __init__(self) -> None:
        super().__init__(ingress())
        self.asked: dict[str, int] = {}

    def _ask(self, name: str) -> None:
        self.asked[name] = self.asked.get(name, 0) + 1

    def read_admin_all(self, pod: Any, paths: list[str], timeout: float) -> Any:
        self._ask(f"read_admin_all {' '.join(p.split('?')[0] for p in paths)}")
        return super().read_admin_all(pod, paths, timeout)

    def rollout_state(self, namespace: str, name: str) -> Any:
        self._ask("rollout_state")
        return super().rollout_state(namespace, name)

    def list_deployments(self, namespace: str | None) -> list[Deployment]:
        """As the real adapter lists them: each with its rollout (here, finished)."""
        done = RolloutState(1, 1, 2, 2, 2, 2)
        return [replace(d, rollout=done) for d in super().list_deployments(namespace)]


def test_the_plan_reads_each_pod_once_and_asks_nothing_twice(
        env: dict[str, str]) -> None:  # noqa: F811
    """One stream per pod carries its listeners and its stats; the Deployment's rollout and
    the pods' drain inputs come with the listings."""
    fake = CountingCluster()
    fake.in_flight[BUSY] = 2
    code, out, err = run(fake, env, "diff")
    assert code == 1, err
    assert "in flight: 4 requests on port 8080; cut within" in out, out  # 2 pods
    # Two replicas: one read each, listeners and stats together; no rollout GET.
    assert fake.asked == {"read_admin_all config_dump stats": 2}, fake.asked


def test_when_quiet_waits_until_requests_end() -> None:
    fake = FakeCluster(ingress())
    fake.in_flight = {BUSY: 1}
    fake.quiet_after = 6  # two pods read per round: quiet in the fourth round
    clock, lines = FakeClock(100.0), list[str]()
    waited = drainplan.wait_quiet(fake, targets(fake), 0, 30.0, lines.append, clock,
                                  clock.sleep)
    assert waited == 3.0 and clock.slept == [1.0, 1.0, 1.0]
    assert len(lines) == 3
    assert "istio-ingressgateway-aaaa1-0: 1 in flight (8080: 1)" in lines[0]


def test_when_quiet_tolerates_up_to_n() -> None:
    fake = FakeCluster(ingress())
    fake.in_flight = {BUSY: 2}
    clock = FakeClock(100.0)
    assert drainplan.wait_quiet(fake, targets(fake), 2, 30.0, print, clock, clock.sleep) == 0
    with pytest.raises(VerificationError, match="not quiet within the timeout"):
        drainplan.wait_quiet(fake, targets(fake), 1, 5.0, lambda _: None, clock, clock.sleep)
    assert clock.now == 105.0


def test_when_quiet_timeout_exits_4_and_writes_nothing(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(ingress())
    fake.in_flight = {BUSY: 1}
    code, _out, err = run(fake, env, "enable", "-y", "--when-quiet", "--timeout", "1s")
    assert code == 4, err
    assert "not quiet within the timeout" in err and "nothing was changed" in err
    assert fake.writes == []


def test_when_quiet_then_applies(env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(ingress())
    fake.in_flight = {BUSY: 1}
    fake.quiet_after = 2  # what the plan read: busy; then quiet
    code, _out, err = run(fake, env, "enable", "-y", "--when-quiet=0")
    assert code == 0, err
    assert "in flight: 2 requests on port 8080; cut within" in err
    assert "quiet: at most 0 request(s) in flight" in err
    assert [w[0] for w in fake.writes] == ["create", "restart"]


def test_when_quiet_takes_only_a_count(env: dict[str, str]) -> None:  # noqa: F811
    code, _out, err = run(None, env, "enable", "-y", "--when-quiet=soon")
    assert code == 2 and "--when-quiet 'soon'" in err


def test_enable_says_the_roll_is_redundant_once_the_push_is_live(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(ingress())
    code, _out, err = run(fake, env, "enable", "-y")
    assert code == 0, err
    assert "istiod's push already made the change live on every pod" in err
    assert err.index("already made the change live") < err.index("successfully rolled out")


def test_roll_not_called_redundant_before_envoy_1_25_or_without_the_push(
        env: dict[str, str]) -> None:  # noqa: F811
    old = FakeCluster(ingress())
    old.envoy_version = "1.24.3"  # shows the options in its dump, sockets lack them
    code, _out, err = run(old, env, "enable", "-y")
    assert code == 0, err
    assert "already made the change live" not in err and "successfully rolled out" in err
    unpushed = FakeCluster(ingress(), propagate=False)
    code, _out, err = run(unpushed, env, "enable", "-y", "--timeout", "1s")
    assert code == 4 and "already made the change live" not in err


@pytest.mark.parametrize(("info", "version"), [
    ('{"version": "9e55809/1.40.0/Clean/RELEASE/BoringSSL"}', (1, 40)),
    ('{"version": "abc/1.29.0-dev/Clean/RELEASE/BoringSSL"}', (1, 29)),
    ('{"version": "garbage"}', None), ("not json", None),
])
def test_envoy_version_from_server_info(info: str, version: tuple[int, int] | None) -> None:
    assert drainplan.envoy_version(info) == version


def test_sockets_accepted_before_the_change_are_told_apart(
        env: dict[str, str]) -> None:  # noqa: F811
    text = ("0 0 10.0.0.1:8080 10.0.0.9:1 timer:(keepalive,59sec,0)\n"
            "0 0 10.0.0.1:8080 10.0.0.9:2\n"
            "0 0 10.0.0.1:8080 10.0.0.9:3 timer:(on,200ms,0)\n")
    seen = count_by_local_port(text)[8080]
    assert seen == Connections(3, 1, 1) and seen.without_keepalive == 1

    class Older(FakeCluster):
        def exec_proxy(self, pod: object, command: list[str], timeout: float) -> bytes:
            old = "\n0 0 10.0.0.1:8080 10.0.0.9:40000"
            return super().exec_proxy(pod, command, timeout) + old.encode()  # type: ignore

    fake = Older(ingress())
    code, out, _ = run(fake, env, "status", "--sockets", "-o", "json")
    assert code == 0
    conns = [lst["connections"] for p in json.loads(out)["gateways"][0]["pods"]
             for lst in p["listeners"] if lst["port"] == 8080]
    assert conns == [{"established": 2, "keepalive": 0}] * 2  # no keepalive yet: not told
    assert run(fake, env, "enable", "-y")[0] == 0
    code, out, _ = run(fake, env, "status", "--sockets", "-o", "json")
    conns = [lst["connections"] for p in json.loads(out)["gateways"][0]["pods"]
             for lst in p["listeners"] if lst["port"] == 8080]
    assert conns == [{"established": 2, "keepalive": 1, "before_change": 1}] * 2
    code, out, _ = run(fake, env, "status", "--sockets", "-o", "wide")
    assert "1/2 (1 before change)" in out
