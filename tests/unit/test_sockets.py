from __future__ import annotations

import json

from kubectl_keepalive.envoy.sockets import Connections, count_by_local_port
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import env, ingress, run  # noqa: F401  (env is a fixture)

# `ss -tnoH state established` as the proxyv2 image prints it (no State column).
SS = """0      0      10.244.1.7:8080   10.0.3.4:51234   timer:(keepalive,58sec,0)
0      0      10.244.1.7:8080   10.0.3.5:51240
0      0      [::ffff:10.244.1.7]:8443 [::ffff:10.0.3.4]:40000 timer:(keepalive,1min2sec,0)
0      0      127.0.0.1:15000   127.0.0.1:40010  timer:(on,200ms,0)
"""


def test_counts_per_local_port() -> None:
    assert count_by_local_port(SS) == {
        8080: Connections(2, 1), 8443: Connections(1, 1), 15000: Connections(1, 0, 1)}
    assert count_by_local_port("") == {}


def test_status_sockets_shows_kernel_timers_off_then_on(env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(ingress())

    def conns() -> list[object]:
        code, out, err = run(fake, env, "status", "--sockets", "-o", "json")
        assert code == 0, err
        pods = json.loads(out)["gateways"][0]["pods"]
        return [lst["connections"] for p in pods for lst in p["listeners"]]

    assert conns() == [{"established": 1, "keepalive": 0}] * 4
    assert run(fake, env, "enable", "-y")[0] == 0
    assert conns() == [{"established": 1, "keepalive": 1}] * 4
    code, out, _ = run(fake, env, "status", "--sockets", "-o", "wide")
    assert code == 0 and "CONNS(KA/ALL)" in out and " 1/1" in out
