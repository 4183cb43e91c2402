"""`doctor` on the lab cluster: the balancer read from the gateway Service's annotations, the
timers from the live Envoy, and `enable` following the reading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import Lab

pytestmark = pytest.mark.cluster

NS = "istio-system"
SERVICE = "istio-ingressgateway"
SELECTOR = "app=istio-ingressgateway"
NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
DECLARED_L7 = {"keepalive.kubectl-plugin.io/balancer-kind": "l7",
               "keepalive.kubectl-plugin.io/idle-timeout-seconds": "60"}


@pytest.fixture
def annotate(clean: Lab) -> Iterator[Any]:
    added: list[str] = []

    def apply(annotations: dict[str, str]) -> None:
        clean.kubectl("annotate", "--overwrite", "service", SERVICE, "-n", NS,
                      *[f"{k}={v}" for k, v in annotations.items()])
        added.extend(annotations)

    yield apply
    if added:
        clean.kubectl("annotate", "service", SERVICE, "-n", NS, *[f"{k}-" for k in added],
                      check=False)


def doctor(lab: Lab) -> tuple[int, dict[str, Any]]:
    done = lab.keepalive("doctor", "-n", NS, "-l", SELECTOR, "--duration", "10m", "-o", "json")
    assert done.returncode in (0, 1, 6), done.stderr
    (gateway,) = json.loads(done.stdout)["gateways"]
    port = next(p for p in gateway["ports"] if p["target_port"] == 8080)
    return done.returncode, port


def test_behind_an_nlb_the_balancer_cuts_at_350s_until_enable(clean: Lab, annotate: Any) -> None:
    annotate(NLB)
    code, port = doctor(clean)
    assert code == 1
    assert port["balancer"]["kind"] == "aws-nlb"
    assert port["balancer"]["idle_timeout_seconds"] == 350
    firsts = [p["first"] for p in port["paths"] if p["first"]]
    assert firsts and all(f["fires_at"] == 350 for f in firsts), port["paths"]
    # enable without --idle follows the reading and says why
    done = clean.keepalive("enable", "-y", "-n", NS, "-l", SELECTOR)
    assert done.returncode == 0, done.stderr
    assert "350" in done.stderr
    code, port = doctor(clean)
    assert code == 0, port
    assert port["keepalive"]["enabled"] is True


def test_behind_a_layer7_balancer_keepalive_is_reported_as_no_help(clean: Lab,
                                                                   annotate: Any) -> None:
    annotate(DECLARED_L7)
    code, port = doctor(clean)
    assert code == 1
    assert port["balancer"]["layer"] == "l7"
    assert "keepalive will not help" in json.dumps(port)


def test_without_annotations_the_balancer_is_unknown_not_guessed(clean: Lab) -> None:
    _, port = doctor(clean)
    assert port["balancer"]["kind"] in ("unknown", "none")
    assert port["balancer"]["idle_timeout_seconds"] is None


def test_an_unidentified_balancer_is_exit_6_not_nothing_cuts(clean: Lab) -> None:
    """The lab's gateway Service says nothing of its balancer and keepalive is off: the
    balancer's idle timeout may cut a 10-minute request, so doctor cannot tell."""
    code, port = doctor(clean)
    assert code == 6, port
    assert port["balancer"]["idle_timeout_seconds"] is None
    assert (port["cut"], port["unknown"], port["keepalive"]["enabled"]) == (False, True, False)
    done = clean.keepalive("doctor", "-n", NS, "-l", SELECTOR, "--duration", "10m")
    assert done.returncode == 6 and "cannot tell" in done.stdout, done.stdout + done.stderr
