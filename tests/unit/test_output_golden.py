"""Golden output: the status table, plans and summaries people read, over the fake cluster.

Each case runs the plugin's CLI over FakeCluster shapes with fixed names (one gateway; the lab's
five gateways; one gateway of 40 pods, two of which disagree) and compares stdout and stderr
with tests/golden/output/CASE.txt. Outside `-o wide` no line may pass 100 columns.

To regenerate after a deliberate change, then review the diff before committing:
    KEEPALIVE_WRITE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_output_golden.py
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pytest

from kubectl_keepalive.cli.main import main
from kubectl_keepalive.errors import ClusterError
from kubectl_keepalive.kube.cluster import AdminRead
from kubectl_keepalive.model import Pod
from tests.unit.fake_cluster import FakeCluster, FakeGateway, helm_gateway

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "output"
WIDTH = 100
WRITE = os.environ.get("KEEPALIVE_WRITE_GOLDEN") == "1"


def operator_gateway(namespace: str, name: str, istio: str, replicas: int = 1,
                     revision: str | None = None) -> FakeGateway:
    """An IstioOperator gateway as the lab seeds it: Envoy's 8080 and 8443."""
    labels = {"app": name, "istio": istio}
    if revision:
        labels["istio.io/rev"] = revision
    return FakeGateway(namespace, name, labels, [8080, 8443], replicas=replicas,
                       selector={"app": name, "istio": istio})


def web_gateway() -> FakeGateway:
    """Gateway API: istiod's Deployment `web-gateway-istio` for Gateway `web-gateway`."""
    name = "gateway.networking.k8s.io/gateway-name"
    return FakeGateway("web", "web-gateway-istio",
                       {name: "web-gateway", "gateway.istio.io/managed":
                        "istio.io-gateway-controller"}, [80], selector={name: "web-gateway"})


def lab_five() -> FakeCluster:
    """The lab's five gateways (lab/gateways.py SEEDED), seven pods."""
    return FakeCluster(
        operator_gateway("istio-system", "istio-ingressgateway", "ingressgateway"),
        helm_gateway("istio-ingress", "istio-ingress", [80, 443]),
        web_gateway(),
        operator_gateway("istio-canary", "istio-ingressgateway-canary", "ingressgateway-canary",
                         revision="canary"),
        operator_gateway("istio-system", "istio-internalgateway", "internalgateway",
                         replicas=3))


def one_gateway() -> FakeCluster:
    return FakeCluster(operator_gateway("istio-system", "istio-ingressgateway",
                                        "ingressgateway", replicas=2))


class Disagreeing(FakeCluster):
    """Pods whose Envoy shows other socket options than their gateway's filter gives."""

    def __init__(self, *gateways: FakeGateway, odd: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(*gateways)
        self.odd = odd  # pod name suffix ("-7") -> the socket options that pod shows

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        read = super().read_admin(pod, path, timeout)
        suffix = "-" + pod.name.rsplit("-", 1)[1]
        if path.startswith("config_dump") and suffix in self.odd:
            dump = json.loads(read.body)
            for entry in dump["configs"][0]["dynamic_listeners"]:
                listener = entry["active_state"]["listener"]
                if listener["address"]["socket_address"]["port_value"] == 8080:
                    listener["socket_options"] = self.odd[suffix]
            return AdminRead(json.dumps(dump).encode(), read.via, read.error)
        return read


class OnePodUnread(FakeCluster):
    """Pod -1 of every gateway does not answer on its admin port."""

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        if pod.name.endswith("-1"):
            raise ClusterError(f"pod {pod.name}: port-forward to 15000: connection refused")
        return super().read_admin(pod, path, timeout)


def option(level: int, name: int, value: int) -> dict[str, Any]:
    return {"level": str(level), "name": str(name), "int_value": str(value),
            "state": "STATE_PREBIND"}


def forty_pods(env: dict[str, str]) -> FakeCluster:
    """40 pods enabled with keepalive 60s/10s/x3; then pod -7 shows none on 8080, pod -23
    other values (as a pod that missed a push, or one patched by hand)."""
    fake = Disagreeing(operator_gateway("istio-system", "istio-ingressgateway",
                                        "ingressgateway", replicas=40), odd={})
    code, _, err = cli(fake, env, "enable", "-y")
    assert code == 0, err
    other = [option(1, 9, 1), option(6, 4, 300), option(6, 5, 30), option(6, 6, 5)]
    fake.odd.update({"-7": [], "-23": other})
    return fake


def cli(fake: FakeCluster | None, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def factory(_: Any) -> FakeCluster:
        assert fake is not None, "this command must not contact a cluster"
        return fake

    code = main(list(argv), out, err, factory, env, io.StringIO(""))
    return code, out.getvalue(), err.getvalue()


def enabled(build: Callable[[], FakeCluster], env: dict[str, str],
            *where: str) -> FakeCluster:
    """`build()` after `enable -y` on the gateways `where` selects."""
    fake = build()
    code, _, err = cli(fake, env, "enable", "-y", *where)
    assert code == 0, err
    return fake


def busy(fake: FakeCluster) -> FakeCluster:
    """Three requests in flight on 8080 of every pod until the third /stats read."""
    for gw in fake.gateways:
        fake.in_flight[f"{gw.namespace}/{gw.name}/8080"] = 3
    fake.quiet_after = 3
    return fake


# name -> (cluster builder given env, argv, wide output allowed)
# typing's Optional: this alias is evaluated at import, and python 3.9 has no `X | None` there.
Case = tuple[Callable[[dict[str, str]], Optional[FakeCluster]], list[str], bool]
CASES: dict[str, Case] = {
    "status-one-gateway-off": (lambda env: one_gateway(), ["status"], False),
    "status-one-gateway-on": (lambda env: enabled(one_gateway, env), ["status"], False),
    "status-five-gateways": (
        lambda env: enabled(lab_five, env, "-n", "istio-system", "-l", "app=istio-ingressgateway"),
        ["status", "-A"], False),
    "status-five-gateways-wide": (
        lambda env: enabled(lab_five, env, "-n", "istio-system", "-l", "app=istio-ingressgateway"),
        ["status", "-A", "-o", "wide"], True),
    "status-forty-pods-two-disagree": (
        forty_pods, ["status", "-A"], False),
    "status-sockets-after-enable": (lambda env: enabled(one_gateway, env),
                                    ["status", "--sockets"], False),
    "status-sorted-no-headers": (lambda env: lab_five(),
                                 ["status", "-A", "--sort-by", ".name", "--no-headers"], False),
    "status-one-pod-not-read": (
        lambda env: OnePodUnread(operator_gateway("istio-system", "istio-ingressgateway",
                                                  "ingressgateway", replicas=3)),
        ["status", "-A"], False),
    "diff-one-gateway": (lambda env: one_gateway(), ["diff"], False),
    "diff-one-gateway-in-flight": (lambda env: busy(one_gateway()), ["diff"], False),
    "diff-five-gateways-verbose": (lambda env: lab_five(),
                                   ["diff", "-n", "istio-system", "-v"], False),
    "enable-one-gateway": (lambda env: one_gateway(), ["enable", "-y"], False),
    "enable-one-gateway-in-flight": (lambda env: busy(one_gateway()), ["enable", "-y"], False),
    "disable-one-gateway": (lambda env: enabled(one_gateway, env), ["disable", "-y"], False),
    "status-from-file": (
        lambda env: None,
        ["status", "--from-file", "tests/golden/rejected/config_dump.json"], False),
}


def render(case: str, env: dict[str, str]) -> str:
    build, argv, _ = CASES[case]
    code, out, err = cli(build(env), env, *argv)
    return f"$ kubectl keepalive {' '.join(argv)}\n# exit {code}\n{out}# stderr\n{err}"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    from tests.unit.test_cli import KUBECONFIG

    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(KUBECONFIG))
    return {"KUBECONFIG": str(path)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_matches_golden(case: str, env: dict[str, str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    got = render(case, env)
    path = GOLDEN / f"{case}.txt"
    if WRITE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no golden {path}: see this module's docstring to write it"
    assert got == path.read_text(), f"{case}: output differs from {path}"


@pytest.mark.parametrize("case", sorted(c for c in CASES if not CASES[c][2]))
def test_no_line_wider_than_a_terminal(case: str) -> None:
    """Outside -o wide no line passes 100 columns (the names in these cases are short). A
    `note:` or `error:` line on stderr quotes the cluster's whole message and may be longer."""
    text = (GOLDEN / f"{case}.txt").read_text()
    wide = [line for line in text.splitlines() if len(line) > WIDTH
            and not line.startswith(("note: ", "error: ", "$ "))]
    assert not wide, wide


def test_only_a_longer_name_makes_a_line_wider(env: dict[str, str]) -> None:
    """Names Kubernetes allows (a 63-character namespace, a long Deployment) widen the lines
    by the room they take beyond the lab's names (the table's columns align, as kubectl's),
    and no more; a detail line is cut to 100 columns."""
    namespace = "team-" + "n" * 58
    name = "gateway-" + "g" * 80
    labels = {"app": "long", "istio": "ingressgateway"}  # a label value is at most 63
    fake = OnePodUnread(FakeGateway(namespace, name, labels, [8080, 8443], replicas=2,
                                    selector=labels),
                        operator_gateway("istio-system", "istio-ingressgateway",
                                         "ingressgateway"))
    for argv in (["status", "-A"], ["diff", "-n", namespace]):
        _, out, err = cli(fake, env, *argv)
        room = len(namespace) - len("istio-system") + len(name) - len("istio-ingressgateway")
        for line in (out + err).splitlines():
            if not line.startswith(("note: ", "error: ")):
                assert len(line) <= WIDTH + room, line
                if line.startswith("  pod "):  # status's detail lines are cut
                    assert len(line) <= WIDTH, line
        assert out


def test_goldens_say_what_they_show() -> None:
    """The cases above and the files on disk are the same set: no stale golden stays."""
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(CASES)
