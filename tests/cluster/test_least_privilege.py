"""Least privilege on the real API server: the Roles `kubectl keepalive rbac` prints, applied as
printed with a ServiceAccount as subject, run exactly their commands; the other commands fail
with exit 3 naming the verb and resource; and with any one rule taken out, a command that needs
it fails naming exactly that rule, or takes the fallback the table documents.

The cases come from `rbac.RULES`: a new rule is tested here (and needs its fallback's words in
FALLBACK_SAYS when it is optional) without editing this file otherwise. One gateway with one pod
(istio-system/istio-ingressgateway), `-l app=istio-ingressgateway`, keeps the run short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.kube import rbac
from tests.cluster.conftest import MANAGED, Lab

pytestmark = pytest.mark.cluster

NS = "istio-system"
SELECTOR = "app=istio-ingressgateway"
OTHER_ROOT = "kka-lp-root"  # a stand-in root namespace, so the -n variant has a root Role
SCOPE = ["-n", NS, "-l", SELECTOR]
ARGV: dict[str, list[str]] = {
    rbac.STATUS: ["status", *SCOPE],
    rbac.SOCKETS: ["status", "--sockets", *SCOPE, "-o", "json"],
    rbac.DIFF: ["diff", *SCOPE],
    rbac.DOCTOR: ["doctor", "--duration", "10m", *SCOPE],
    rbac.ENABLE: ["enable", "-y", "--timeout", "120s", *SCOPE],
    rbac.DISABLE: ["disable", "-y", "--timeout", "120s", *SCOPE],
}
# diff exits 1 when it finds changes, doctor 1 when a timer fires first and 6 when it cannot
# tell (the lab's Service names no balancer): findings, not errors.
SUCCESS = {rbac.DIFF: (0, 1), rbac.DOCTOR: (0, 1, 6)}
# The cheapest command to prove a rule with: reads before writes.
ORDER = (rbac.STATUS, rbac.DOCTOR, rbac.DIFF, rbac.SOCKETS, rbac.ENABLE, rbac.DISABLE)
# What each optional rule's fallback says (the table's `fallback`, as the command prints it).
FALLBACK_SAYS = {
    "portforward": "port-forward to pods is forbidden",
    "exec": "sockets not read",
    "nodes": "cannot list nodes",
    "root-envoyfilters": f"cannot list EnvoyFilters in Istio's root namespace {OTHER_ROOT}",
    "mesh-config": "cannot read ConfigMap",
}


# -- accounts ---------------------------------------------------------------------------------


def printed_roles(lab: Lab, role: str, name: str, *extra: str) -> list[dict[str, Any]]:
    """`kubectl keepalive rbac ROLE` output, subject filled in by its flag, as documents."""
    done = lab.keepalive("rbac", role, "--serviceaccount", f"{NS}:{name}", "--name", name,
                         *extra)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def as_rule(rule: rbac.Rule) -> dict[str, Any]:
    return {"apiGroups": [rule.group], "resources": [rule.resource], "verbs": list(rule.verbs)}


def without(docs: list[dict[str, Any]], rule: rbac.Rule) -> list[dict[str, Any]]:
    """The documents with `rule` taken out of whichever Role holds it (exactly once)."""
    wanted = as_rule(rule)
    held = [d for d in docs if wanted in d.get("rules", [])]
    assert len(held) == 1, f"{rule.key} is in {len(held)} Roles"
    held[0]["rules"].remove(wanted)
    return docs


class Accounts:
    """ServiceAccounts with the printed Roles, and a kubeconfig each; all removed afterwards."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.made: list[tuple[str, str, str | None]] = []  # (kind, name, namespace)

    def make(self, name: str, docs: list[dict[str, Any]]) -> str:
        self.lab.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": NS}})
        self.made.append(("serviceaccount", name, NS))
        for doc in docs:
            self.lab.apply(doc)
            self.made.append((doc["kind"].lower(), doc["metadata"]["name"],
                              doc["metadata"].get("namespace")))
        self._wait_bound(name, docs)
        token = self.lab.kubectl("create", "token", name, "-n", NS,
                                 "--duration=1h").stdout.strip()
        admin = yaml.safe_load(Path(self.lab.kubeconfig).read_text())
        cluster = admin["clusters"][0]
        path = self.tmp / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [cluster], "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name,
                                                    "namespace": NS}}]}))
        return str(path)

    def _wait_bound(self, name: str, docs: list[dict[str, Any]]) -> None:
        """The authorizer reads bindings from an informer: wait until it grants the first
        plain rule of the first Role."""
        rule = next(r for r in docs[0]["rules"] if "/" not in r["resources"][0])
        group = rule["apiGroups"][0]
        resource = rule["resources"][0] + (f".{group}" if group else "")
        who = f"system:serviceaccount:{NS}:{name}"
        deadline = time.monotonic() + 20
        while True:
            done = self.lab.kubectl("auth", "can-i", rule["verbs"][0], resource, "-n", NS,
                                    "--as", who, check=False)
            if done.stdout.strip() == "yes":
                return
            assert time.monotonic() < deadline, f"{who} never got {rule}"
            time.sleep(0.3)

    def remove(self) -> None:
        for kind, name, namespace in reversed(self.made):
            where = ["-n", namespace] if namespace else []
            self.lab.kubectl("delete", kind, name, *where, "--ignore-not-found",
                             "--wait=false", check=False)
        self.made.clear()


@pytest.fixture
def accounts(clean: Lab, tmp_path: Path) -> Iterator[Accounts]:
    made = Accounts(clean, tmp_path)
    yield made
    made.remove()


def filters(lab: Lab) -> list[str]:
    return lab.kubectl("get", "envoyfilters.networking.istio.io", "-n", NS, "-l", MANAGED,
                       "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


def generation(lab: Lab) -> int:
    return int(lab.get_json("deployment", "istio-ingressgateway", "-n", NS)["metadata"][
        "generation"])


def succeeds(lab: Lab, command: str, kubeconfig: str) -> None:
    done = lab.keepalive(*ARGV[command], kubeconfig=kubeconfig)
    assert done.returncode in SUCCESS.get(command, (0,)), (command, done.stderr)
    assert "error:" not in done.stderr, (command, done.stderr)
    assert "forbidden" not in done.stderr, (command, done.stderr)
    if command == rbac.SOCKETS:
        pods = [p for g in json.loads(done.stdout)["gateways"] for p in g["pods"]]
        assert pods and all(p["sockets_error"] is None for p in pods), pods


def refused(lab: Lab, command: str, kubeconfig: str, rule: rbac.Rule) -> str:
    """The command fails with exit 3, its last line naming one of the rule's verbs on the
    rule's resource; returns that line."""
    done = lab.keepalive(*ARGV[command], kubeconfig=kubeconfig)
    assert done.returncode == 3, (command, rule.key, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    names = [f"cannot {verb} {rule.qualified}" for verb in rule.verbs]
    assert last.startswith("error: forbidden (403)"), last
    assert any(name in last for name in names), (names, last)
    return last


# -- each role runs exactly its commands ------------------------------------------------------


def test_viewer_runs_its_commands_and_no_write(accounts: Accounts) -> None:
    lab = accounts.lab
    kubeconfig = accounts.make("kka-lp-viewer", printed_roles(lab, "viewer", "kka-lp-viewer"))
    for command in rbac.role_commands("viewer"):
        succeeds(lab, command, kubeconfig)
    before = generation(lab)
    write = next(r for r in rbac.RULES if r.key == "envoyfilters-write")
    refused(lab, rbac.ENABLE, kubeconfig, write)
    assert filters(lab) == [] and generation(lab) == before
    # disable has something to delete only once the filter exists: written by the admin.
    assert lab.keepalive("enable", "-y", "--no-restart", *SCOPE).returncode == 0
    assert "cannot delete" in refused(lab, rbac.DISABLE, kubeconfig, write)
    assert filters(lab) != [] and generation(lab) == before


def test_operator_runs_every_command(accounts: Accounts) -> None:
    lab = accounts.lab
    kubeconfig = accounts.make("kka-lp-operator",
                               printed_roles(lab, "operator", "kka-lp-operator"))
    for command in rbac.READERS:
        succeeds(lab, command, kubeconfig)
    before = generation(lab)
    succeeds(lab, rbac.ENABLE, kubeconfig)
    assert filters(lab) != [] and generation(lab) > before
    succeeds(lab, rbac.DISABLE, kubeconfig)
    assert filters(lab) == []


def test_namespaced_viewer_reads_its_namespace(accounts: Accounts) -> None:
    lab = accounts.lab
    docs = printed_roles(lab, "viewer", "kka-lp-ns-viewer", "-n", NS)
    assert {d["kind"] for d in docs} == {"Role", "RoleBinding", "ClusterRole",
                                         "ClusterRoleBinding"}
    kubeconfig = accounts.make("kka-lp-ns-viewer", docs)
    for command in rbac.role_commands("viewer"):
        succeeds(lab, command, kubeconfig)
    done = lab.keepalive("status", "-A", "-l", SELECTOR, kubeconfig=kubeconfig)
    assert done.returncode == 3 and "cannot list pods at cluster scope" in done.stderr


# -- rule by rule -----------------------------------------------------------------------------


def cases() -> list[Any]:
    found = []
    for role in rbac.ROLES:
        for rule in rbac.rules_for(role):
            # In the ClusterRole variant the filter read everywhere covers the root namespace;
            # that rule is proven with the -n variant and a root namespace of its own.
            variant = "namespaced" if rule.key == "root-envoyfilters" else "cluster"
            found.append(pytest.param(role, rule.key, variant, id=f"{role}-{rule.key}"))
    return found


def test_every_optional_rule_says_its_fallback() -> None:
    optional = {r.key for r in rbac.RULES if r.optional_for}
    assert optional == set(FALLBACK_SAYS), "a new optional rule needs the words its note says"


@pytest.fixture(scope="module")
def other_root(lab: Lab) -> Iterator[None]:
    # One namespace for the whole module: deleting it after each case raced the next case's
    # apply into a namespace still terminating.
    lab.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER_ROOT}})
    yield
    lab.kubectl("delete", "namespace", OTHER_ROOT, "--ignore-not-found", "--timeout=120s",
                check=False)


@pytest.mark.parametrize(("role", "key", "variant"), cases())
def test_without_one_rule(accounts: Accounts, other_root: None, role: str, key: str,
                          variant: str) -> None:
    lab = accounts.lab
    rule = next(r for r in rbac.RULES if r.key == key)
    name = f"kka-lp-{role[:2]}-{key}"[:63]
    extra = ["-n", NS, "--istio-namespace", OTHER_ROOT] if variant == "namespaced" else []
    kubeconfig = accounts.make(name, without(printed_roles(lab, role, name, *extra), rule))
    commands = rbac.role_commands(role)
    needing = [c for c in ORDER if c in rule.needed_by and c in commands]
    if needing:
        before = (filters(lab), generation(lab))
        refused(lab, needing[0], kubeconfig, rule)
        if needing[0] not in (rbac.ENABLE, rbac.DISABLE):
            assert (filters(lab), generation(lab)) == before
        return
    command = next(c for c in ORDER if c in rule.optional_for and c in commands)
    argv = ARGV[command] + (["--istio-namespace", OTHER_ROOT] if extra else [])
    if command in (rbac.ENABLE, rbac.DISABLE):
        argv = [*argv, "--dry-run=server"]  # the fallback is in the plan; nothing is written
    done = lab.keepalive(*argv, kubeconfig=kubeconfig)
    assert done.returncode in SUCCESS.get(command, (0,)), (key, done.stderr)
    assert FALLBACK_SAYS[key] in done.stderr + done.stdout, (key, done.stderr)
