"""`doctor` and `enable`'s recommendation over FakeCluster (a fake) with a real Envoy dump."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.fake_cluster import FakeCluster, FakeGateway
from tests.unit.test_cli import env, ingress, run  # noqa: F401  (env is a fixture)

DUMP = Path(__file__).resolve().parents[1] / "golden" / "doctor" / "istio-gateway.config_dump.json"


def gateway_with_dump() -> FakeGateway:
    from kubectl_keepalive.doctor import timers

    raw = DUMP.read_text()
    (port,) = timers.ports(raw)
    gateway = ingress()
    gateway.ports = [8080]
    gateway.full_dump = raw.replace(f'"port_value": {port}', '"port_value": 8080')
    return gateway


def service(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
                         "annotations": annotations},
            "spec": {"type": "LoadBalancer",
                     "selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                     "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}


NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}


def test_doctor_names_the_balancer_as_first_cut_then_nothing_after_enable(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service(NLB)]
    code, out, err = run(fake, env, "doctor", "--duration", "10m", "-o", "json")
    assert code == 1, err
    (port,) = json.loads(out)["gateways"][0]["ports"]
    assert port["service_port"] == 80 and port["target_port"] == 8080
    assert "350" in json.dumps(port)
    # enable without --idle proposes settings below the balancer's idle timeout, and says why
    code, _, err = run(fake, env, "enable", "-y")
    assert code == 0, err
    assert "350" in err and "--idle overrides" in err


def test_doctor_says_keepalive_does_not_help_behind_a_layer7_balancer(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service({"keepalive.kubectl-plugin.io/balancer-kind": "l7",
                              "keepalive.kubectl-plugin.io/idle-timeout-seconds": "60"})]
    code, out, err = run(fake, env, "doctor", "--duration", "10m")
    assert code == 1, err
    assert "keepalive will not help" in out


def test_doctor_bad_duration_is_usage_error(env: dict[str, str]) -> None:  # noqa: F811
    code, out, err = run(FakeCluster(gateway_with_dump()), env, "doctor", "--duration", "ten")
    assert (code, out) == (2, "") and err.startswith("error: ")


def test_diff_after_a_balancer_aware_enable_finds_nothing(
        env: dict[str, str]) -> None:  # noqa: F811
    """issue 11 part 4: diff and enable compute the wanted settings the same way."""
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service({**NLB, "service.beta.kubernetes.io/aws-load-balancer-listener-"
                                     "attributes.TCP-80": "tcp.idle_timeout.seconds=60"})]
    code, _, err = run(fake, env, "enable", "-y")
    assert code == 0, err
    assert "60s" in err and "--idle overrides" in err
    code, out, err = run(fake, env, "diff")
    assert code == 0, out + err
    # An explicit flag still wins over the recommendation, in both.
    assert run(fake, env, "diff", "--idle", "60")[0] == 1


def test_doctor_cannot_tell_when_the_balancer_is_unknown(env: dict[str, str]) -> None:  # noqa: F811
    """A LoadBalancer Service the doctor cannot identify, and nothing in the gateway cuts a
    3-second request (the dump's shortest route timer is 4s): the balancer's idle timeout may,
    so the honest answer is exit 6."""
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service({})]
    code, out, err = run(fake, env, "doctor", "--duration", "3s")
    assert code == 6, out + err
    assert "nothing cuts" not in out
    assert "cannot tell" in out and "keepalive.kubectl-plugin.io/idle-timeout-seconds" in out
    code, out, err = run(fake, env, "doctor", "--duration", "3s", "-o", "json")
    assert code == 6, err
    (port,) = json.loads(out)["gateways"][0]["ports"]
    assert (port["cut"], port["unknown"], port["balancer"]["idle_timeout_seconds"]) == (
        False, True, None)
    # Declared, it can tell again: an L4 balancer of 20 minutes does not cut 3 seconds.
    fake.services = [service({"keepalive.kubectl-plugin.io/balancer-kind": "l4",
                              "keepalive.kubectl-plugin.io/idle-timeout-seconds": "1200"})]
    code, out, err = run(fake, env, "doctor", "--duration", "3s")
    assert code == 0, out + err
    assert "nothing cuts this request" in out


def test_a_cut_port_decides_over_one_that_cannot_be_told() -> None:
    from kubectl_keepalive.usecases.diagnose import Diagnosis, PortDiagnosis

    class Report:
        def __init__(self, exit_code: int) -> None:
            self.exit_code = exit_code

    def diagnosis(*codes: int) -> Diagnosis:
        return Diagnosis(tuple(PortDiagnosis(None, None, Report(c)) for c in codes))  # type: ignore[arg-type]

    assert diagnosis(6, 1, 0).exit_code == 1
    assert diagnosis(0, 6).exit_code == 6
    assert diagnosis(0, 0).exit_code == 0
    assert diagnosis().exit_code == 0
