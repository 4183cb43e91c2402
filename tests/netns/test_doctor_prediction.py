"""The doctor's prediction for the lab's balancer matches what the packets do.

The balancer's idle timeout is declared to the doctor the way a Service annotation would
declare it; the timers come from the lab gateway's live Envoy config dump.
"""

from __future__ import annotations

import pytest

from kubectl_keepalive.doctor import analysis, balancers, timers
from tests.netns.test_incident_lab import DELAY, IDLE, plugin_socket_options
from tests.support.netlab import GATEWAY_PORT, IncidentLab

pytestmark = pytest.mark.netns

DECLARED = {"metadata": {"name": "lab-balancer", "namespace": "lab", "annotations": {
    balancers.DECLARED_KIND: "l4", balancers.DECLARED_IDLE: str(IDLE)}}}


def predicted_cut(lab: IncidentLab) -> bool:
    port = timers.read_port(lab.gateway.config_dump(), GATEWAY_PORT)
    report = analysis.analyze(port, balancers.detect(DECLARED),
                              analysis.Profile(duration=DELAY))
    return report.cut


def test_predicted_cut_is_cut_and_predicted_safe_survives() -> None:
    with IncidentLab(IDLE, backend_delay_s=DELAY) as lab:
        assert predicted_cut(lab)
        assert not lab.request().ok
        lab.set_socket_options(plugin_socket_options(2, 2, 3))
        assert not predicted_cut(lab)
        assert lab.request().ok
        # Keepalive slower than the balancer: the doctor must not call this safe.
        lab.set_socket_options(plugin_socket_options(7, 1, 3))
        assert predicted_cut(lab)
        assert not lab.request().ok
