"""The three things the first soak found (issue 24), each on the lab: the filter selects by the
Deployment whatever -l said, a lost race under --no-restart stops at once naming the winner,
and `diff` against what the real API server returns marks only the values that changed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.conftest import MANAGED, Lab
from tests.cluster.faultlab import (
    control_plane_up,
    eventually,
    frozen,
    istiod_pid_file,
    keepalive_options,
    run_enable,
    wanted_options,
)

pytestmark = pytest.mark.cluster

NS, GW, SELECTOR = "istio-system", "istio-ingressgateway", "app=istio-ingressgateway"
CANARY_NS, CANARY = "istio-canary", "istio-ingressgateway-canary"
PORTS = (8080, 8443)
FILTERS = "envoyfilters.networking.istio.io"


def settings(idle: int, interval: int = 5, probes: int = 2) -> list[str]:
    return ["--idle", f"{idle}s", "--interval", f"{interval}s", "--probes", str(probes)]


def pods(lab: Lab, namespace: str, selector: str) -> list[str]:
    items = lab.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return [i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp")
            and i["status"].get("phase") == "Running"]


def live_at(lab: Lab, namespace: str, selector: str, idle: int, interval: int = 5,
            probes: int = 2) -> bool:
    """Every running pod's Envoy has exactly these options on both ports."""
    names = pods(lab, namespace, selector)
    wanted = {p: wanted_options(idle, interval, probes) for p in PORTS}
    return bool(names) and all(keepalive_options(lab, namespace, n, PORTS) == wanted
                               for n in names)


def off(lab: Lab, namespace: str, selector: str) -> bool:
    names = pods(lab, namespace, selector)
    return bool(names) and all(not any(keepalive_options(lab, namespace, n, PORTS).values())
                               for n in names)


def replicasets(lab: Lab, namespace: str, deployment: str) -> set[str]:
    items = lab.get_json("replicasets", "-n", namespace)["items"]
    return {i["metadata"]["name"] for i in items
            if any(o["name"] == deployment for o in i["metadata"].get("ownerReferences", []))}


def the_filter(lab: Lab, namespace: str, gateway: str) -> dict[str, Any]:
    found: dict[str, Any] = lab.get_json(FILTERS, f"keepalive-{gateway}", "-n", namespace)
    return found


@pytest.fixture
def quiet_lab(clean: Lab) -> Iterator[Lab]:
    """The clean lab, its control plane up, and the ingress gateway's pods without keepalive
    (the reset's delete pushed), so that a wait for a push is really met."""
    eventually(lambda: control_plane_up(clean), "the control plane", 120)
    eventually(lambda: off(clean, NS, SELECTOR), "istiod to push the reset lab", 60)
    yield clean
    eventually(lambda: control_plane_up(clean), "the control plane to come back", 120)


def test_l_by_revision_writes_the_deployments_selector_and_another_l_changes_nothing(
        clean: Lab) -> None:
    lab = clean
    deployment = lab.get_json("deployment", CANARY, "-n", CANARY_NS)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert "istio.io/rev" not in selector  # the lab's Deployment, as an install leaves it
    done = lab.keepalive("enable", "-y", "-n", CANARY_NS, "-l", "istio.io/rev=canary",
                         *settings(7), "--timeout", "120s")
    assert done.returncode == 0, done.stderr
    written = the_filter(lab, CANARY_NS, CANARY)
    # What the real API server stored: the Deployment's selector, not what -l said.
    assert written["spec"]["workloadSelector"]["labels"] == selector
    assert written["metadata"]["labels"]["istio.io/rev"] == "canary"  # for the canary istiod
    canary_pods = ",".join(f"{k}={v}" for k, v in selector.items())
    eventually(lambda: live_at(lab, CANARY_NS, canary_pods, 7), "the canary's options", 30)
    # The same values through the Deployment's own label: nothing written, nothing rolled.
    sets = replicasets(lab, CANARY_NS, CANARY)
    again = lab.keepalive("enable", "-y", "-n", CANARY_NS, "-l", f"app={CANARY}", *settings(7))
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert the_filter(lab, CANARY_NS, CANARY)["metadata"]["resourceVersion"] == \
        written["metadata"]["resourceVersion"]
    assert replicasets(lab, CANARY_NS, CANARY) == sets
    assert lab.keepalive("diff", "-n", CANARY_NS, "-l", "istio.io/rev=canary",
                         *settings(7)).returncode == 0
    # Offline, -l is the selector as given: a revision's label is refused, nothing printed.
    offline = lab.keepalive("enable", "--dry-run=client", "-n", CANARY_NS, "-l",
                            "istio.io/rev=canary", "--port", "8080", "-o", "yaml")
    assert offline.returncode == 2 and offline.stdout == "", offline
    (line,) = offline.stderr.splitlines()
    assert line.startswith("error: -l istio.io/rev=canary: pods get istio.io/rev from their "
                           "revision"), line


def test_a_lost_race_under_no_restart_stops_at_once_naming_the_winner(quiet_lab: Lab) -> None:
    """Two enables with other settings, both --no-restart, istiod held until the second has
    written: the first, verifying, sees the filter change and stops with exit 3 (before the
    fix it waited out its --timeout and exited 4), and its re-run replaces the winner's."""
    lab = quiet_lab
    first = ["enable", "-y", "-n", NS, "-l", SELECTOR, *settings(7), "--no-restart",
             "--timeout", "60s"]
    second = ["enable", "-y", "-n", NS, "-l", SELECTOR, *settings(9), "--no-restart",
              "--timeout", "60s"]
    istiod = int(istiod_pid_file("default").read_text())
    winner: list[subprocess.CompletedProcess[str]] = []

    def idle_written() -> int:
        patches = the_filter(lab, NS, GW)["spec"]["configPatches"]
        options = patches[0]["patch"]["value"]["socket_options"]
        return int(next(o["int_value"] for o in options if int(o["name"]) == 4))

    def race(thaw: Callable[[], None]) -> None:
        with subprocess.Popen(["kubectl", "keepalive", *second], env=lab.env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL) as proc:
            try:
                eventually(lambda: idle_written() == 9, "the second enable's write", 60)
            finally:
                thaw()  # istiod may push now: the second enable verifies and ends
            out, err = proc.communicate(timeout=120)
            winner.append(subprocess.CompletedProcess(second, proc.returncode, out, err))

    with frozen(istiod) as thaw:
        done = run_enable(lab, first, f"waiting for gateway {NS}/{GW} to show",
                          lambda: race(thaw))
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: envoyfilter {NS}/keepalive-{GW} was changed by another "
                           "writer (field manager kubectl-keepalive at "), last
    assert "it now sets on idle=9s interval=5s probes=2 on port(s) 8080, 8443)" in last, last
    assert f"while this run verified gateway {NS}/{GW}" in last, last
    assert ("re-running this command replaces those settings with this run's (on idle=7s "
            "interval=5s probes=2)") in last, last
    assert "options not live" not in last and done.stdout == "", done.stdout
    (won,) = winner
    assert won.returncode == 0, won.stderr
    eventually(lambda: live_at(lab, NS, SELECTOR, 9), "the winner's options", 30)
    # The re-run does what the message said: the first command's settings replace the winner's.
    again = lab.keepalive(*first)
    assert again.returncode == 0, again.stderr
    eventually(lambda: live_at(lab, NS, SELECTOR, 7), "the re-run's options", 30)
    items = lab.get_json(FILTERS, "-n", NS, "-l", MANAGED)["items"]
    assert [i["metadata"]["name"] for i in items] == [f"keepalive-{GW}"]


def test_diff_after_one_value_changed_marks_only_that_value(quiet_lab: Lab) -> None:
    """The live filter as the real API server returns it (its own key order) against the wanted
    one: after --idle 45s, `diff --idle 46s` marks the two int_values and nothing else."""
    lab = quiet_lab
    where = ["-n", NS, "-l", SELECTOR]
    done = lab.keepalive("enable", "-y", *where, *settings(45), "--no-restart", "--timeout",
                         "60s")
    assert done.returncode == 0, done.stderr
    diff = lab.keepalive("diff", *where, *settings(46))
    assert diff.returncode == 1, diff.stderr
    body = [line[2:] for line in diff.stdout.splitlines() if line.startswith("  ")]
    changed = [line[0] + line[1:].strip() for line in body
               if line[:1] in ("+", "-") and not line.startswith(("---", "+++"))]
    assert sorted(changed) == ["+int_value: 46", "+int_value: 46",
                               "-int_value: 45", "-int_value: 45"], diff.stdout
