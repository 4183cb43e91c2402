"""Tier 3: a real control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok nodes)
started by lab/cluster-up.sh, Istio's real CRDs, a real istiod per revision, one real Envoy per
gateway pod (in the pod's own network namespace, configured by istiod), and the plugin run as
`kubectl keepalive ...` through the real kubectl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))

import labctl  # noqa: E402  (the lab's own records of which Envoy serves which pod)

MANAGED = "app.kubernetes.io/managed-by=kubectl-keepalive"
TEST_LABEL = "keepalive-test=true"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# On a scenario's Deployment: the listener ports its Envoys must have before a test starts
# ("8081,9443"); "" waits for no dynamic listener; absent: at least one.
LISTENERS_ANNOTATION = "keepalive-lab/listeners"


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


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """A lab without managed or test filters before and after the test."""
    lab.reset()
    yield lab
    lab.reset()


@dataclass
class Scenario:
    """One file of tests/cluster/scenarios applied to the lab."""

    name: str
    path: Path
    namespaces: list[str] = field(default_factory=list)  # the Namespaces the file creates
    deployments: list[dict[str, Any]] = field(default_factory=list)  # as the API returns them

    def pods(self, lab: Lab) -> list[dict[str, Any]]:
        """The running proxy pods of the scenario's Deployments (each listed once)."""
        found: dict[str, dict[str, Any]] = {}
        for dep in self.deployments:
            meta = dep["metadata"]
            labels = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
            for pod in lab.get_json("pods", "-n", meta["namespace"], "-l", labels)["items"]:
                if not pod["metadata"].get("deletionTimestamp"):
                    found[pod["metadata"]["uid"]] = pod
        return list(found.values())


def _documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def _ready(lab: Lab, scenario: Scenario) -> list[str]:
    """What still keeps the scenario from being ready: a pod without its lab Envoy, its kwok
    wiring, or the listeners istiod gives it."""
    records = {(r["namespace"], r["name"]): r for r in labctl.pod_records()}
    wired = {(i["metadata"]["namespace"], i["metadata"]["name"])
             for i in lab.get_json("portforwards.kwok.x-k8s.io", "-A")["items"]}
    expected = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d
                for d in scenario.deployments}
    waiting: list[str] = []
    for dep in scenario.deployments:
        meta = dep["metadata"]
        status = lab.get_json("deployment", meta["name"], "-n", meta["namespace"])["status"]
        if status.get("readyReplicas", 0) < dep["spec"].get("replicas", 1):
            waiting.append(f"deployment {meta['namespace']}/{meta['name']}")
    for pod in scenario.pods(lab):
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        record = records.get(key)
        if record is None or key not in wired:
            waiting.append(f"pod {key[0]}/{key[1]} (no Envoy or wiring)")
            continue
        # pod_wiring records each pod's Deployment as "<namespace>/<name>".
        owner = expected.get(record["gateway"])
        wanted = ((owner or {}).get("metadata", {}).get("annotations") or {}).get(
            LISTENERS_ANNOTATION)
        names = labctl.dynamic_listener_names(record["admin"])
        dynamic = {n for n in names if not n.endswith("_static")}
        if wanted is None:
            ok = bool(dynamic)
        else:
            ok = {f"0.0.0.0_{p.strip()}" for p in wanted.split(",") if p.strip()} <= dynamic
        if not ok:
            waiting.append(f"pod {key[0]}/{key[1]} (listeners {sorted(dynamic)})")
    return waiting


def _wait(what: str, check: Callable[[], list[str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = check()
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {', '.join(left)}")
        time.sleep(0.5)


def apply_scenario(lab: Lab, name: str) -> Scenario:
    """Applies tests/cluster/scenarios/NAME.yaml (server-side: again on a lab where a killed run
    left it, it converges)."""
    path = SCENARIOS / f"{name}.yaml"
    docs = _documents(path)
    lab.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=keepalive-test",
                "-f", str(path))
    scenario = Scenario(name, path,
                        [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"])
    for doc in docs:
        if doc["kind"] == "Deployment":
            meta = doc["metadata"]
            scenario.deployments.append(lab.get_json("deployment", meta["name"], "-n",
                                                     meta.get("namespace", "default")))
    return scenario


def wait_for_scenario(lab: Lab, scenario: Scenario, timeout: float = 120.0) -> None:
    """Until every proxy pod of the scenario runs its own Envoy, wired, with the listeners
    istiod gives it."""
    _wait(f"scenario {scenario.name}", lambda: _ready(lab, scenario), timeout)


def remove_scenario(lab: Lab, scenario: Scenario, timeout: float = 120.0) -> None:
    """Deletes what the file made and waits until its namespaces, pods and Envoys are gone."""
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in scenario.pods(lab)}
    lab.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(scenario.path))

    def left() -> list[str]:
        out = [f"namespace {n}" for n in scenario.namespaces
               if lab.kubectl("get", "namespace", n, check=False).returncode == 0]
        out += [f"envoy {r['namespace']}/{r['name']}" for r in labctl.pod_records()
                if (r["namespace"], r["name"]) in pods]
        return out

    _wait(f"scenario {scenario.name} to go", left, timeout)


@pytest.fixture(scope="module")
def scenario(lab: Lab) -> Iterator[Callable[[str], Scenario]]:
    """`scenario("helm-gateway")` applies tests/cluster/scenarios/helm-gateway.yaml once per test
    module (a later call returns the same), and removes every applied scenario after the module."""
    applied: dict[str, Scenario] = {}

    def use(name: str) -> Scenario:
        if name not in applied:
            applied[name] = apply_scenario(lab, name)  # recorded first: removed even if not ready
            wait_for_scenario(lab, applied[name])
        return applied[name]

    yield use
    for item in reversed(list(applied.values())):
        remove_scenario(lab, item)
