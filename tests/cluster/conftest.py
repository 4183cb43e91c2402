"""Tier 3: a real control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok nodes)
started by lab/cluster-up.sh, Istio's real CRDs, a real istiod per revision, one real Envoy per
gateway pod (in the pod's own network namespace, configured by istiod), and the plugin run as
`kubectl keepalive ...` through the real kubectl.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))

import labctl  # noqa: E402  (the lab's own records of which Envoy serves which pod)

MANAGED = "app.kubernetes.io/managed-by=kubectl-keepalive"
TEST_LABEL = "keepalive-test=true"


@dataclass(frozen=True)
class Lab:
    kubeconfig: str

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        # The plugin installed in this interpreter's environment, found by kubectl on PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["KUBECONFIG"] = self.kubeconfig
        env.update(extra)
        return env

    def keepalive(self, *args: str, kubeconfig: str | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`kubectl keepalive ARGS` through the real kubectl's plugin discovery."""
        env = self.env(**({"KUBECONFIG": kubeconfig} if kubeconfig else {}))
        return subprocess.run(["kubectl", "keepalive", *args], env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def kubectl(self, *args: str, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], env=self.env(), capture_output=True, text=True,
                              timeout=120, check=check, input=stdin)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, document: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(document))

    def pod_address(self, namespace: str, pod: str) -> str:
        """The address of the pod's own network namespace, where its Envoy listens."""
        for record in labctl.pod_records():
            if (record["namespace"], record["name"]) == (namespace, pod):
                return str(record["address"])
        raise AssertionError(f"no lab Envoy runs for pod {namespace}/{pod}")

    def reset(self) -> None:
        """Undo what a test may have left: our filters, test filters, paused or broken rollouts."""
        for selector in (MANAGED, TEST_LABEL):
            self.kubectl("delete", "envoyfilters.networking.istio.io", "-A", "-l", selector,
                         "--wait=false", check=False)
        for item in self.get_json("deployments", "-A")["items"]:
            spec = item["spec"]
            broken = spec.get("paused") or spec["template"]["spec"].get("nodeSelector")
            if broken:
                meta = item["metadata"]
                patch = {"spec": {"paused": False, "template": {"spec": {"nodeSelector": None}}}}
                self.kubectl("patch", "deployment", meta["name"], "-n", meta["namespace"],
                             "--type=merge", "-p", json.dumps(patch))
                self.kubectl("rollout", "status", f"deployment/{meta['name']}", "-n",
                             meta["namespace"], "--timeout=120s")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if not shutil.which("go"):
        pytest.skip("Go is needed to build the lab's control plane")
    up = subprocess.run(["bash", str(REPO / "lab" / "cluster-up.sh")], capture_output=True,
                        text=True, timeout=3600)
    if up.returncode != 0:
        pytest.fail(f"lab/cluster-up.sh failed ({up.returncode}):\n{up.stderr[-4000:]}")
    kubeconfig = up.stdout.strip().splitlines()[-1]
    lab = Lab(kubeconfig)
    lab.reset()
    yield lab
    lab.reset()
    # The lab's namespaces, routes and processes go with the session, unless asked to stay
    # (a developer re-running one test saves the 12 s start).
    if os.environ.get("KEEPALIVE_KEEP_LAB") != "1":
        subprocess.run(["bash", str(REPO / "lab" / "cluster-down.sh")], capture_output=True,
                       text=True, timeout=300, check=True)


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """A lab without managed or test filters before and after the test."""
    lab.reset()
    yield lab
    lab.reset()
