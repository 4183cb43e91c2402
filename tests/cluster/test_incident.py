"""The incident through the whole real chain: client -> L4 balancer -> gateway pod -> backend.

The gateway is the lab cluster's istio-ingressgateway pod: its Envoy runs in the pod's own
network namespace with listeners from the real istiod, and `kubectl keepalive enable` changes it
only through an EnvoyFilter, istiod and a rollout. No stand-in is in the path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import Lab, labctl
from tests.support.netlab import IncidentLab, missing_requirements

pytestmark = pytest.mark.cluster

NS = "istio-system"
SELECTOR = "app=istio-ingressgateway"
IDLE_TIMEOUT_S = 4
DELAY_S = 10.0


def test_a_long_request_is_cut_then_saved_by_enable(clean: Lab, tmp_path: Path) -> None:
    missing = missing_requirements()
    if missing:
        pytest.skip("incident lab needs " + ", ".join(missing))
    lab = clean
    netns = labctl.single_pod_netns(lab.kubeconfig, NS, SELECTOR)
    with IncidentLab(IDLE_TIMEOUT_S, backend_delay_s=DELAY_S, workdir=tmp_path,
                     gateway_netns=netns) as incident:
        before = incident.request()
        assert not before.ok and before.error == "timeout", before
        done = lab.keepalive("enable", "-y", "-n", NS, "-l", SELECTOR, "--idle", "1s",
                             "--interval", "1s", "--probes", "3")
        assert done.returncode == 0, done.stderr
        incident.retarget(labctl.single_pod_netns(lab.kubeconfig, NS, SELECTOR))
        with incident.capture() as capture:
            after = incident.request()
        assert after.ok and after.status == 200, after
        to_gateway, through = capture.gateway_probes()
        # Probes from the gateway's socket kept the balancer's flow alive while the app worked.
        assert len(to_gateway) >= 3 and len(through) >= 3, (to_gateway, through)
