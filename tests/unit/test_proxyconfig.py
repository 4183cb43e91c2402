"""Drain and termination timings: annotation over mesh config over Istio's defaults, each
number with the source it came from, and the plan that shows them."""

from __future__ import annotations

import json

import pytest

from kubectl_keepalive.istio import proxyconfig
from kubectl_keepalive.istio.proxyconfig import Timing
from tests.unit.fake_cluster import FakeCluster, FakeGateway
from tests.unit.test_cli import env, ingress, run  # noqa: F401  (env is a fixture)

MESH = "mesh config defaultConfig (ConfigMap istio-system/istio)"
ANNOTATION = "annotation proxy.istio.io/config"


@pytest.mark.parametrize(("text", "seconds"), [
    ("45s", 45.0), ("1m30s", 90.0), ("1.5s", 1.5), ("500ms", 0.5), ("1h", 3600.0),
    ("12", 12.0), (7, 7.0), ({"seconds": 3, "nanos": 500000000}, 3.5),
])
def test_proto_durations(text: object, seconds: float) -> None:
    assert proxyconfig.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "5 parsecs", True, None, [1]])
def test_not_durations(text: object) -> None:
    assert proxyconfig.parse_duration(text) is None


def test_annotation_wins_over_mesh_config_which_wins_over_defaults() -> None:
    mesh = proxyconfig.mesh_default_config(
        "rootNamespace: istio-system\ndefaultConfig:\n  drainDuration: 20s\n"
        "  terminationDrainDuration: 9s\n")
    timings, notes = proxyconfig.resolve('{"drainDuration": "6s"}', mesh, MESH, None)
    assert notes == []
    assert timings.drain == Timing(6.0, ANNOTATION)
    assert timings.termination_drain == Timing(9.0, MESH)
    assert timings.grace == Timing(30.0, "Kubernetes default")
    assert timings.pod_end == Timing(9.0, f"terminationDrainDuration from {MESH}")


def test_defaults_are_named_and_the_grace_period_cuts_the_agent_drain_short() -> None:
    timings, notes = proxyconfig.resolve(None, None, MESH, 2)
    assert notes == []
    assert timings.drain == Timing(45.0, "Istio default")
    assert timings.termination_drain == Timing(5.0, "Istio default")
    assert timings.grace == Timing(2.0, "pod spec")
    assert timings.pod_end == Timing(2.0, "terminationGracePeriodSeconds from pod spec")


def test_a_bad_annotation_or_value_falls_back_and_says_so() -> None:
    timings, notes = proxyconfig.resolve("- not a mapping", {"drainDuration": "whenever"},
                                         MESH, "30")
    assert timings.drain == Timing(45.0, "Istio default")
    assert timings.grace == Timing(30.0, "Kubernetes default")  # a string is not the spec's int
    assert any("annotation proxy.istio.io/config unreadable" in n for n in notes), notes
    assert any('drainDuration "whenever" is not a duration' in n for n in notes), notes


def test_configmap_per_revision() -> None:
    assert proxyconfig.configmap_name(None) == "istio"
    assert proxyconfig.configmap_name("default") == "istio"
    assert proxyconfig.configmap_name("canary") == "istio-canary"


def _plan(fake: FakeCluster, env: dict[str, str]) -> dict[str, object]:  # noqa: F811
    code, out, err = run(fake, env, "diff", "-o", "json")
    assert code == 1, err
    (gateway,) = json.loads(out)["gateways"]
    assert isinstance(gateway, dict)
    return gateway


def test_the_plan_reads_annotation_mesh_config_and_grace_period(
        env: dict[str, str]) -> None:  # noqa: F811
    gw = ingress()
    gw.proxy_config = "drainDuration: 7s\n"
    gw.grace_seconds = 3
    fake = FakeCluster(gw)
    fake.configmaps[("istio-system", "istio")] = {
        "mesh": "defaultConfig:\n  drainDuration: 20s\n  terminationDrainDuration: 10s\n"}
    plan = _plan(fake, env)
    assert plan["push_drain"] == {"seconds": 7.0, "source": ANNOTATION}
    assert plan["rollout_pod_end"] == {
        "seconds": 3.0, "source": "terminationGracePeriodSeconds from pod spec"}
    pods = plan["pods"]
    assert isinstance(pods, list) and len(pods) == 2
    assert pods[0]["termination_drain"] == {"seconds": 10.0, "source": MESH}
    code, out, _ = run(fake, env, "diff", "-v")
    assert code == 1
    assert "  push drain 7s: annotation proxy.istio.io/config\n" in out, out
    assert ("  old pods end 3s into the rollout: terminationGracePeriodSeconds from pod "
            "spec\n") in out, out


def test_a_revisioned_pod_reads_its_revisions_mesh_config(
        env: dict[str, str]) -> None:  # noqa: F811
    gw = FakeGateway("istio-system", "gw-canary",
                     {"app": "gw-canary", "istio": "ingressgateway-canary",
                      "istio.io/rev": "canary"}, [8080])
    fake = FakeCluster(gw)
    fake.configmaps[("istio-system", "istio")] = {"mesh": "defaultConfig:\n  drainDuration: 1s"}
    fake.configmaps[("istio-system", "istio-canary")] = {
        "mesh": "defaultConfig:\n  drainDuration: 12s\n"}
    plan = _plan(fake, env)
    assert plan["push_drain"] == {
        "seconds": 12.0, "source": "mesh config defaultConfig (ConfigMap istio-system/"
                                   "istio-canary)"}


def test_a_forbidden_mesh_config_degrades_to_defaults_with_a_note(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(ingress())
    fake.forbid_configmaps = True
    plan = _plan(fake, env)
    assert plan["push_drain"] == {"seconds": 45.0, "source": "Istio default"}
    notes = plan["notes"]
    assert isinstance(notes, list) and len(notes) == 1
    assert "cannot read ConfigMap istio-system/istio (forbidden)" in notes[0]
    code, _out, err = run(fake, env, "enable", "-y")
    assert code == 0, err
    assert "(forbidden)" in err
