"""Faults done to the real lab processes while `enable` runs (issue 15 part 3).

Each test breaks one thing at a known moment of `enable` (a progress line on its stderr tells
when), undoes it in a `finally`, and checks the exit code, the account printed, the cluster as
it was left (the filter, the Deployment's restartedAt annotation and ReplicaSets), and that the
same command run again exits 0 with the options live. One single-pod gateway, short timeouts.
The lab must come back by itself as a node does (lab/control_plane.py restarts what exits).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import MANAGED, Lab, labctl
from tests.cluster.faultlab import (
    COMPONENTS,
    alive,
    cluster_up,
    component_pid,
    control_plane_up,
    eventually,
    run_enable,
)

pytestmark = pytest.mark.cluster

NAMESPACE, DEPLOYMENT, SELECTOR = "istio-system", "istio-ingressgateway", "app=istio-ingressgateway"
FILTER = f"envoyfilter {NAMESPACE}/keepalive-{DEPLOYMENT} created"
FAST = ["--idle", "7s", "--interval", "5s", "--probes", "2"]
ENABLE = ["enable", "-y", "-n", NAMESPACE, "-l", SELECTOR, *FAST]
WANTED = [(1, 9, 1), (6, 4, 7), (6, 5, 5), (6, 6, 2)]
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
def last_error(done: subprocess.CompletedProcess[str]) -> str:
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), done.stderr
    return last


def account(last: str) -> tuple[str, str]:
    """(already done, not done) of the account on the error line."""
    assert "re-run the same command to finish" in last, last
    done = last.split("already done: ", 1)[1].split("; not done: ", 1)[0]
    missing = last.split("; not done: ", 1)[1].split("; re-run the same command", 1)[0]
    return done, missing


def filters(lab: Lab) -> list[str]:
    items = lab.get_json("envoyfilters.networking.istio.io", "-n", NAMESPACE, "-l",
                         MANAGED)["items"]
    return [i["metadata"]["name"] for i in items]


def restarted_at(lab: Lab) -> str | None:
    dep = lab.get_json("deployment", DEPLOYMENT, "-n", NAMESPACE)
    annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(RESTARTED_AT)


def replicasets(lab: Lab) -> set[str]:
    items = lab.get_json("replicasets", "-n", NAMESPACE, "-l", SELECTOR)["items"]
    return {i["metadata"]["name"] for i in items}


def running_pods(lab: Lab) -> list[dict[str, Any]]:
    items = lab.get_json("pods", "-n", NAMESPACE, "-l", SELECTOR)["items"]
    return [i for i in items if not i["metadata"].get("deletionTimestamp")]


def envoy_pid(pod: str) -> int:
    for record in labctl.pod_records():
        if (record["namespace"], record["name"]) == (NAMESPACE, pod):
            return int(record["pid"])
    raise AssertionError(f"no lab Envoy runs for pod {NAMESPACE}/{pod}")


def options_live(lab: Lab) -> bool:
    """Every current pod's Envoy has the wanted options on 8080 and 8443 (read directly)."""
    import urllib.request

    pods = running_pods(lab)
    for pod in pods:
        address = lab.pod_address(NAMESPACE, pod["metadata"]["name"])
        with urllib.request.urlopen(f"http://{address}:15000/config_dump?resource="
                                    "dynamic_listeners", timeout=10) as reply:
            dump = json.loads(reply.read())
        for entry in dump.get("configs", []):
            if entry["name"] in ("0.0.0.0_8080", "0.0.0.0_8443"):
                listener = (entry.get("active_state") or {}).get("listener") or {}
                got = [(int(o.get("level", 0)), int(o.get("name", 0)),
                        int(o.get("int_value", 0))) for o in listener.get("socket_options", [])]
                if got != WANTED:
                    return False
    return bool(pods)


def reset_pushed(lab: Lab) -> None:
    """The lab's reset deleted the filter an earlier test wrote with the same options; until
    istiod has pushed that, the pod still shows them, and an enable run while istiod is down
    would find them live and wait for no push (the fault under test would never be met)."""
    eventually(lambda: not options_live(lab), "istiod to push the reset lab", 60)


def rerun_finishes(lab: Lab, args: list[str]) -> subprocess.CompletedProcess[str]:
    again = lab.keepalive(*args)
    assert again.returncode == 0, again.stderr
    eventually(lambda: options_live(lab), "the options to be live on every pod", 30)
    return again


@pytest.fixture
def faults(clean: Lab) -> Iterator[Lab]:
    """The clean lab, with the control plane checked up before and after each fault."""
    eventually(lambda: control_plane_up(clean), "the control plane", 120)
    yield clean
    eventually(lambda: control_plane_up(clean), "the control plane to come back", 120)


def test_an_api_server_frozen_past_the_timeout_in_the_rollout_wait(faults: Lab) -> None:
    """Frozen 20 s: the wait asks again until --timeout, then says exactly what was done; the
    controllers that lost their lease come back, and a re-run finishes the rollout."""
    lab = faults
    api = component_pid("kube-apiserver")
    before = {c: component_pid(c) for c in COMPONENTS}
    sets = replicasets(lab)

    def freeze() -> None:
        os.kill(api, signal.SIGSTOP)
        try:
            time.sleep(20)
        finally:
            os.kill(api, signal.SIGCONT)

    try:
        done = run_enable(lab, [*ENABLE, "--timeout", "10s", "--request-timeout", "2s"],
                          "Waiting for deployment", freeze)
    finally:
        os.kill(api, signal.SIGCONT)
    assert done.returncode == 3, done.stderr
    assert "the API server is not answering" in done.stderr
    last = last_error(done)
    assert f'waiting for deployment "{DEPLOYMENT}"' in last, last
    did, missing = account(last)
    assert did == f"{FILTER}; deployment {NAMESPACE}/{DEPLOYMENT} restarted", last
    assert missing == (f"rollout of deployment {NAMESPACE}/{DEPLOYMENT} not completed; "
                       f"gateway {NAMESPACE}/{DEPLOYMENT} not verified"), last
    # The lab recovers as a node does: whatever exited was restarted, the rest kept running.
    eventually(lambda: control_plane_up(lab), "the control plane after the freeze", 120)
    for name, pid in before.items():
        now = component_pid(name)
        assert now == pid or alive(now, name), (name, pid, now)
    assert filters(lab) == [f"keepalive-{DEPLOYMENT}"]
    assert restarted_at(lab) is not None
    # The restarted controller-manager takes the restart up once it holds its lease again.
    eventually(lambda: replicasets(lab) > sets, "the restart's new ReplicaSet", 60)
    stamp = restarted_at(lab)
    again = rerun_finishes(lab, ENABLE)
    # The restart was sent once: the re-run waits for that rollout and restarts nothing more.
    assert restarted_at(lab) == stamp and "verified" in again.stdout, again.stdout


def test_an_api_server_killed_in_the_rollout_wait_comes_back_and_enable_finishes(
        faults: Lab) -> None:
    lab = faults
    api = component_pid("kube-apiserver")
    stamp = restarted_at(lab)

    restarter = int((labctl.run_dir() / "control-plane.pid").read_text())

    def kill() -> None:
        # The restarter held back 5 s, as a kubelet's back-off does: a real outage, then back.
        os.kill(restarter, signal.SIGSTOP)
        try:
            os.kill(api, signal.SIGKILL)
            time.sleep(5)
        finally:
            os.kill(restarter, signal.SIGCONT)

    done = run_enable(lab, [*ENABLE, "--timeout", "120s", "--request-timeout", "3s"],
                      "Waiting for deployment", kill)
    # lab/control_plane.py restarted it, as the kubelet restarts a static pod.
    assert component_pid("kube-apiserver") != api, done.stderr
    assert done.returncode == 0, done.stderr
    assert "the API server is not answering" in done.stderr, done.stderr
    assert f"{FILTER}\n" in done.stdout and "verified: " in done.stdout, done.stdout
    assert restarted_at(lab) != stamp
    eventually(lambda: options_live(lab), "the options to be live", 30)
    again = rerun_finishes(lab, ENABLE)
    assert "nothing to do" in again.stderr


def test_istiod_killed_in_the_push_wait_is_restarted_and_enable_finishes(faults: Lab) -> None:
    lab = faults
    pid_file = labctl.run_dir() / "istiod-default.pid"
    istiod = int(pid_file.read_text())
    stamp = restarted_at(lab)
    reset_pushed(lab)
    # Killed before the write, so the push wait is where enable meets it.
    os.kill(istiod, signal.SIGKILL)

    def restart() -> None:
        time.sleep(2)  # still waiting while istiod is down
        cluster_up(lab)

    try:
        done = run_enable(lab, [*ENABLE, "--timeout", "90s"],
                          "waiting for istiod to push the change", restart)
    finally:
        if not alive(int(pid_file.read_text()), "pilot-discovery"):
            cluster_up(lab)
    assert int(pid_file.read_text()) != istiod
    assert done.returncode == 0, done.stderr
    assert f"{FILTER}\n" in done.stdout and "verified: " in done.stdout, done.stdout
    assert restarted_at(lab) != stamp and filters(lab) == [f"keepalive-{DEPLOYMENT}"]
    again = rerun_finishes(lab, ENABLE)
    assert "nothing to do" in again.stderr


def test_a_pod_deleted_during_verification_is_replaced_and_the_new_one_verified(
        faults: Lab) -> None:
    lab = faults
    (pod,) = [p["metadata"]["name"] for p in running_pods(lab)]
    istiod = int((labctl.run_dir() / "istiod-default.pid").read_text())
    args = [*ENABLE, "--no-restart", "--timeout", "60s"]
    reset_pushed(lab)
    # istiod frozen: verification waits for the push, and the pod goes meanwhile.
    os.kill(istiod, signal.SIGSTOP)

    def delete() -> None:
        try:
            lab.kubectl("delete", "pod", pod, "-n", NAMESPACE, "--wait=false")
        finally:
            os.kill(istiod, signal.SIGCONT)

    try:
        done = run_enable(lab, args, f"waiting for gateway {NAMESPACE}/{DEPLOYMENT} to show",
                          delete)
    finally:
        os.kill(istiod, signal.SIGCONT)
    assert done.returncode == 0, done.stderr
    (replacement,) = [p["metadata"]["name"] for p in running_pods(lab)]
    assert replacement != pod
    assert f"verified: gateway {NAMESPACE}/{DEPLOYMENT}: " in done.stdout, done.stdout
    assert "of 1 pod(s)" in done.stdout
    again = rerun_finishes(lab, args)
    assert "nothing to do" in again.stderr


def test_a_stalled_envoy_admin_is_named_and_a_rerun_finishes(faults: Lab) -> None:
    lab = faults
    (pod,) = [p["metadata"]["name"] for p in running_pods(lab)]
    envoy = envoy_pid(pod)
    # Unread when planning, the ports must be named (as the refusal without them says).
    args = [*ENABLE, "--port", "8080", "--port", "8443", "--no-restart", "--timeout", "15s"]
    stamp = restarted_at(lab)
    os.kill(envoy, signal.SIGSTOP)
    try:
        done = lab.keepalive(*args)
    finally:
        os.kill(envoy, signal.SIGCONT)
    assert done.returncode == 4, done.stderr
    last = last_error(done)
    assert f"{pod}: " in last and "options not live" in last, last
    did, missing = account(last)
    assert did == FILTER, last
    assert missing == f"pod(s) {pod} of gateway {NAMESPACE}/{DEPLOYMENT} not verified", last
    assert filters(lab) == [f"keepalive-{DEPLOYMENT}"] and restarted_at(lab) == stamp
    again = rerun_finishes(lab, args)
    assert "nothing to do" in again.stderr or "verified" in again.stdout
