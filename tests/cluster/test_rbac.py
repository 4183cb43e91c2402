"""RBAC on the real API server: a ServiceAccount missing one permission gets an error naming it,
the documented exit code, and an unchanged cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import Lab

pytestmark = pytest.mark.cluster

NS = "istio-system"
SELECTOR = "app=istio-ingressgateway"

READ = ["get", "list", "watch"]
BASE_RULES = [
    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": READ},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": READ},
]
PORT_FORWARD = {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]}
EXEC = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]}
FILTERS_RW = {"apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"],
              "verbs": [*READ, "create", "patch", "update", "delete"]}
FILTERS_RO = {"apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"], "verbs": READ}
ROLL = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}


def account(lab: Lab, tmp: Path, name: str, rules: list[dict[str, object]]) -> str:
    """A kubeconfig for ServiceAccount `name` bound to a Role with exactly `rules`."""
    for doc in (
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": NS}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}]},
    ):
        lab.kubectl("apply", "-f", "-", stdin=json.dumps(doc))
    token = lab.kubectl("create", "token", name, "-n", NS, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(lab.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name,
                                                "namespace": NS}}],
    }
    path = tmp / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def cluster_state(lab: Lab) -> tuple[str, str]:
    filters = lab.kubectl("get", "envoyfilters.networking.istio.io", "-n", NS, "-o",
                          "jsonpath={.items[*].metadata.name}").stdout
    deployment = lab.get_json("deployment", "istio-ingressgateway", "-n", NS)
    return filters, deployment["metadata"]["generation"]


@pytest.fixture
def tmp(tmp_path: Path, clean: Lab) -> Iterator[Path]:
    yield tmp_path
    for name in ("kka-no-portforward", "kka-no-create", "kka-read-only"):
        for kind in ("rolebinding", "role", "serviceaccount"):
            clean.kubectl("delete", kind, name, "-n", NS, "--ignore-not-found", check=False)


def test_without_port_forward_status_reads_through_exec_and_says_so(clean: Lab,
                                                                    tmp: Path) -> None:
    kubeconfig = account(clean, tmp, "kka-no-portforward", [*BASE_RULES, EXEC, FILTERS_RO])
    done = clean.keepalive("status", "-l", SELECTOR, "-o", "json", kubeconfig=kubeconfig)
    assert done.returncode == 0, done.stderr
    assert "port-forward to pods is forbidden" in done.stderr
    pods = json.loads(done.stdout)["gateways"][0]["pods"]
    assert pods and all(p["via"] == "exec" and p["listeners"] for p in pods)


def test_without_envoyfilter_create_enable_names_it_and_changes_nothing(clean: Lab,
                                                                      tmp: Path) -> None:
    rules = [*BASE_RULES, PORT_FORWARD, ROLL,
             {"apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"],
              "verbs": [*READ, "patch", "delete"]}]
    kubeconfig = account(clean, tmp, "kka-no-create", rules)
    before = cluster_state(clean)
    done = clean.keepalive("enable", "-y", "-l", SELECTOR, kubeconfig=kubeconfig)
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: forbidden (403): cannot create "
                           "envoyfilters.networking.istio.io in namespace istio-system")
    assert cluster_state(clean) == before


def test_read_only_account_can_read_status_but_not_enable(clean: Lab, tmp: Path) -> None:
    kubeconfig = account(clean, tmp, "kka-read-only",
                         [*BASE_RULES, {"apiGroups": [""], "resources": ["pods/portforward"],
                                        "verbs": ["get", "create"]}, FILTERS_RO])
    assert clean.keepalive("status", "-l", SELECTOR, kubeconfig=kubeconfig).returncode == 0
    before = cluster_state(clean)
    done = clean.keepalive("enable", "-y", "-l", SELECTOR, kubeconfig=kubeconfig)
    assert done.returncode == 3
    assert "cannot create envoyfilters.networking.istio.io" in done.stderr
    assert cluster_state(clean) == before
