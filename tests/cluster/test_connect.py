"""How the plugin connects, on the real API server: stream failures are the pod's error (exit 3,
never a silent 0), a failed verification read is exit 4, exec credential plugins given by a
relative path, --token, --as, and --request-timeout against a stopped API server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import Lab

pytestmark = pytest.mark.cluster

NS = "istio-system"
SELECTOR = "app=istio-ingressgateway"
DEPLOYMENT = "istio-ingressgateway"
SA = "kka-connect"
RULES = [
    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    {"apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"],
     "verbs": ["get", "list", "watch"]},
]


def gateway_pod(lab: Lab) -> str:
    pods = lab.get_json("pods", "-n", NS, "-l", SELECTOR)["items"]
    running = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, running
    return str(running[0])


def restore(lab: Lab) -> None:
    """A fresh pod gets fresh kwok wiring from the lab's pod wiring."""
    lab.kubectl("rollout", "restart", f"deployment/{DEPLOYMENT}", "-n", NS)
    lab.kubectl("rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NS, "--timeout=120s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if lab.keepalive("status", "-n", NS, "-l", SELECTOR, timeout=60).returncode == 0:
            return
        time.sleep(1)
    raise AssertionError("the gateway did not come back readable")


@pytest.fixture
def unwired(clean: Lab) -> Iterator[str]:
    """The gateway pod with its kwok PortForward removed: port-forward to it fails."""
    pod = gateway_pod(clean)
    clean.kubectl("delete", "portforwards.kwok.x-k8s.io", pod, "-n", NS)
    try:
        yield pod
    finally:
        restore(clean)


def test_unreadable_pod_is_exit_3_naming_it_every_time(clean: Lab, unwired: str) -> None:
    for _ in range(30):
        done = clean.keepalive("status", "-n", NS, "-l", SELECTOR, timeout=60)
        assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
        assert unwired in done.stderr and "Traceback" not in done.stderr


def test_enable_whose_verification_read_fails_exits_4(clean: Lab) -> None:
    pod = gateway_pod(clean)
    # --no-restart keeps this pod, so its missing PortForward fails the verification read.
    clean.kubectl("delete", "portforwards.kwok.x-k8s.io", pod, "-n", NS)
    try:
        done = clean.keepalive("enable", "-y", "--no-restart", "-n", NS, "-l", SELECTOR,
                               "--port", "8080", "--timeout", "20s", timeout=120)
        assert done.returncode == 4, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    finally:
        restore(clean)


@pytest.fixture
def account(clean: Lab) -> Iterator[str]:
    """ServiceAccount SA with read rights in NS; yields a token for it."""
    for doc in (
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": SA, "namespace": NS}, "rules": RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": SA, "namespace": NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
         "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]},
    ):
        clean.apply(doc)
    try:
        yield clean.kubectl("create", "token", SA, "-n", NS, "--duration=1h").stdout.strip()
    finally:
        for kind in ("rolebinding", "role", "serviceaccount"):
            clean.kubectl("delete", kind, SA, "-n", NS, "--ignore-not-found", check=False)


def kubeconfig_with(lab: Lab, folder: Path, user: dict[str, object]) -> str:
    admin = yaml.safe_load(Path(lab.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [cluster], "users": [{"name": "sa", "user": user}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa",
                                                 "namespace": NS}}]}))
    return str(path)


def test_exec_plugin_by_relative_path_and_a_missing_one(clean: Lab, account: str,
                                                        tmp_path: Path) -> None:
    script = tmp_path / "cred.sh"
    script.write_text("#!/bin/sh\nprintf '%s' '" + json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
        "status": {"token": account}}) + "'\n")
    script.chmod(0o755)
    exec_spec = {"command": "./cred.sh", "apiVersion": "client.authentication.k8s.io/v1",
                 "interactiveMode": "Never"}
    kubeconfig = kubeconfig_with(clean, tmp_path, {"exec": exec_spec})
    done = clean.keepalive("status", "-l", SELECTOR, "-o", "json", kubeconfig=kubeconfig)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gateways"]
    script.unlink()
    missing = clean.keepalive("status", "-l", SELECTOR, kubeconfig=kubeconfig)
    assert missing.returncode == 3, missing.stderr
    assert 'exec credential plugin "' in missing.stderr and "cred.sh" in missing.stderr
    assert "not found" in missing.stderr


def test_token_flag_and_impersonation(clean: Lab, account: str, tmp_path: Path) -> None:
    anonymous = kubeconfig_with(clean, tmp_path, {})
    done = clean.keepalive("status", "-l", SELECTOR, "--token", account, kubeconfig=anonymous)
    assert done.returncode == 0, done.stderr
    nobody = clean.keepalive("status", "-n", NS, "-l", SELECTOR, "--as", "kka-nobody")
    assert nobody.returncode == 3 and "forbidden (403)" in nobody.stderr, nobody.stderr
    allowed = clean.keepalive("status", "-n", NS, "-l", SELECTOR, "--as",
                              f"system:serviceaccount:{NS}:{SA}")
    assert allowed.returncode == 0, allowed.stderr


def apiserver_pid() -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and os.path.basename(argv[0]).startswith(b"kube-apiserver") and any(
                    b"keepalive-lab" in a for a in argv):
                return int(entry.name)
    raise AssertionError("no kube-apiserver of the lab is running")


def test_request_timeout_against_a_stopped_apiserver(clean: Lab) -> None:
    pid = apiserver_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        done = clean.keepalive("status", "-n", NS, "-l", SELECTOR, "--request-timeout", "2s",
                               timeout=30)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.returncode == 3, done.stderr
    assert took < 5, took
