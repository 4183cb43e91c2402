"""The rights table (`rbac.RULES`) against what the code really asks, and the YAML it prints.

Two recorders keep the table honest. A loopback HTTP server stands in for the API server and
records every request `kube.api.KubeCluster` sends for each `Cluster` method (a new method fails the
test until it is listed here); each request becomes (group, resource, verb) the way the API
server's RequestInfo does, and the table must hold exactly those. Then every command runs over
FakeCluster (a fake) behind a recorder of the methods it calls: a rule the table says a command
needs must be asked for, and nothing is asked that the command's rules do not allow.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_keepalive.errors import KeepaliveError
from kubectl_keepalive.kube import rbac
from kubectl_keepalive.kube.api import KubeCluster
from kubectl_keepalive.kube.client.kubeconfig import resolve
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.model import Pod
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_cli import env, run  # noqa: F401  (env is a fixture)
from tests.unit.test_cli_doctor import NLB, gateway_with_dump, service

Triple = tuple[str, str, str]  # (apiGroup, resource, verb)
POD = Pod("ns", "gw-1", containers=("istio-proxy",))
FILTER = {"metadata": {"name": "f", "namespace": "ns"}}

# One call per way each Cluster method can reach the API (namespaced and cluster-wide).
CALLS: dict[str, list[Callable[[Any], object]]] = {
    "list_pods": [lambda c: c.list_pods("ns", "app=gw"), lambda c: c.list_pods(None, "app=gw")],
    "list_deployments": [lambda c: c.list_deployments("ns"),
                         lambda c: c.list_deployments(None)],
    "rollout_state": [lambda c: c.rollout_state("ns", "gw")],
    "restart_deployment": [lambda c: c.restart_deployment("ns", "gw", "now", False)],
    "list_envoyfilters": [lambda c: c.list_envoyfilters("ns"),
                          lambda c: c.list_envoyfilters(None)],
    "get_envoyfilter": [lambda c: c.get_envoyfilter("ns", "f")],
    "create_envoyfilter": [lambda c: c.create_envoyfilter("ns", FILTER, False)],
    "patch_envoyfilter": [lambda c: c.patch_envoyfilter("ns", "f", [], False)],
    "delete_envoyfilter": [lambda c: c.delete_envoyfilter("ns", "f", "1", False)],
    "read_admin": [lambda c: c.read_admin(POD, "listeners", 2.0)],
    "exec_proxy": [lambda c: c.exec_proxy(POD, ["ss", "-tno"], 2.0)],
    "list_services": [lambda c: c.list_services("ns"), lambda c: c.list_services(None)],
    "read_admin_all": [lambda c: c.read_admin_all(POD, ["listeners", "stats"], 2.0)],
    "get_configmap": [lambda c: c.get_configmap("istio-system", "istio")],
    "node_provider_ids": [lambda c: c.node_provider_ids()],
    "describe": [lambda c: c.describe()],
}


class Recording(BaseHTTPRequestHandler):
    """Answers like a permissive API server with nothing in it; websockets are refused (403),
    so read_admin also shows its exec fallback."""

    seen: list[tuple[str, str, bool]] = []  # noqa: RUF012  (shared with the server thread)

    def _answer(self) -> None:
        upgrade = (self.headers.get("Upgrade") or "").lower() == "websocket"
        Recording.seen.append((self.command, self.path.split("?")[0], upgrade))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = (403, {"message": "refused by the recorder"}) if upgrade else (
            200, {"items": []})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    def log_message(self, *_args: Any) -> None:
        pass


def request_info(method: str, path: str, upgrade: bool) -> tuple[list[Triple], bool]:
    """(group, resource, verb)s the API server authorizes for a request, and whether it is
    cluster-scoped: k8s.io/apiserver RequestInfoFactory's rules for the paths we send."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespaced = len(rest) >= 2 and rest[0] == "namespaces"
    rest = rest[2:] if namespaced else rest
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    if upgrade:  # a websocket GET: "get", and from Kubernetes 1.35 "create" as well
        verbs = ["get", "create"]
    else:
        named = len(rest) > 1
        verbs = [{"GET": "get" if named else "list", "POST": "create", "PATCH": "patch",
                  "DELETE": "delete", "PUT": "update"}[method]]
    return [(group, resource, v) for v in verbs], not namespaced


@pytest.fixture(scope="module")
def adapter_requests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[Triple]]:
    """Per Cluster method: the triples KubeCluster sent to the recording server."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    path = tmp_path_factory.mktemp("rbac") / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "rec",
        "contexts": [{"name": "rec", "context": {"cluster": "rec", "user": "rec"}}],
        "clusters": [{"name": "rec", "cluster": {
            "server": f"http://127.0.0.1:{httpd.server_address[1]}"}}],
        "users": [{"name": "rec", "user": {}}],
    }))
    found: dict[str, set[Triple]] = {}
    try:
        for method, calls in CALLS.items():
            # A fresh adapter each: one remembers a refused port-forward and asks no more.
            cluster = KubeCluster(resolve(str(path), None, None, {}))
            if not hasattr(cluster, method):
                continue  # the adapter lags the protocol: the table test names it
            Recording.seen.clear()
            for call in calls:
                with contextlib.suppress(KeepaliveError):  # the refused websockets
                    call(cluster)
            found[method] = set()
            for seen in Recording.seen:
                triples, cluster_scoped = request_info(*seen)
                found[method] |= set(triples)
                # A cluster-scoped resource is never asked for in a namespace (and a namespaced
                # one without a namespace is -A, which the ClusterRole variant grants).
                for resource in {t[1] for t in triples}:
                    in_cluster_rule = any(r.resource == resource and r.scope == rbac.CLUSTER
                                          for r in rbac.RULES)
                    assert cluster_scoped or not in_cluster_rule, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
    return found


def table_triples(*scopes: str) -> set[Triple]:
    return {(r.group, r.resource, v) for r in rbac.RULES if r.scope in scopes for v in r.verbs}


def test_every_cluster_method_is_exercised() -> None:
    methods = {n for n, v in vars(Cluster).items() if not n.startswith("_") and callable(v)}
    assert methods == set(CALLS), "a new Cluster method needs a CALLS entry and its rule"


def test_the_table_holds_exactly_what_the_adapter_can_send(
        adapter_requests: dict[str, set[Triple]]) -> None:
    missing = set(CALLS) - set(adapter_requests)
    assert not missing, f"kube.KubeCluster does not implement {sorted(missing)}"
    sent = set().union(*adapter_requests.values())
    assert sent, "the recorder saw no request"
    assert sent - table_triples(rbac.NAMESPACED, rbac.CLUSTER, rbac.ROOT) == set(), (
        "missing rules")
    assert table_triples(rbac.NAMESPACED, rbac.CLUSTER, rbac.ROOT) - sent == set(), (
        "rules for requests the code never sends")
    # Spot checks that the recorder reads requests the way the API server does.
    assert ("", "pods/portforward", "create") in adapter_requests["read_admin"]
    assert adapter_requests["read_admin_all"] == adapter_requests["read_admin"]
    assert ("", "pods/exec", "get") in adapter_requests["exec_proxy"]
    assert adapter_requests["restart_deployment"] == {("apps", "deployments", "patch")}
    assert adapter_requests["node_provider_ids"] == {("", "nodes", "list")}
    assert adapter_requests["describe"] == set()


# -- commands over FakeCluster -------------------------------------------------------------------


class MethodRecorder:
    """The fake behind a recorder of the Cluster methods a command calls."""

    def __init__(self, inner: FakeCluster) -> None:
        self.inner = inner
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name not in CALLS:
            return value

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.called.add(name)
            return value(*args, **kwargs)

        return recorded


ARGV = {
    rbac.STATUS: ["status"],
    rbac.SOCKETS: ["status", "--sockets"],
    rbac.DIFF: ["diff"],
    rbac.DOCTOR: ["doctor", "--duration", "10m"],
    rbac.ENABLE: ["enable", "-y", "--timeout", "30s"],
    rbac.DISABLE: ["disable", "-y", "--timeout", "30s"],
}


def fake_cluster() -> FakeCluster:
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service({})]
    fake.provider_ids = ["aws:///us-east-1a/i-1"]
    return fake


def command_triples(env: dict[str, str], adapter: dict[str, set[Triple]],  # noqa: F811
                    command: str) -> set[Triple]:
    fake = fake_cluster()
    if command == rbac.DISABLE:
        assert run(fake, env, *ARGV[rbac.ENABLE])[0] == 0
    recorder = MethodRecorder(fake)
    out, err = io.StringIO(), io.StringIO()
    from kubectl_keepalive.cli.main import main

    code = main(ARGV[command], out, err, lambda _: recorder, env, io.StringIO(""))
    assert code in (0, 1), err.getvalue()  # diff finds changes: 1
    unknown = recorder.called - set(adapter)
    assert not unknown, f"{command} calls {sorted(unknown)}, which KubeCluster lacks"
    return set().union(*(adapter[m] for m in recorder.called))


def covers(rule: rbac.Rule, triples: set[Triple]) -> bool:
    return any((rule.group, rule.resource, v) in triples for v in rule.verbs)


@pytest.mark.parametrize("command", list(ARGV))
def test_each_command_asks_for_its_rules_and_nothing_else(
        env: dict[str, str], adapter_requests: dict[str, set[Triple]],  # noqa: F811
        command: str) -> None:
    asked = command_triples(env, adapter_requests, command)
    for rule in rbac.RULES:
        if command in rule.commands:
            assert covers(rule, asked), f"{command} never asks for {rule.key}"
    allowed = {(r.group, r.resource, v) for r in rbac.RULES if command in r.commands
               for v in r.verbs}
    if covers(next(r for r in rbac.RULES if r.key == "portforward"), asked):
        allowed |= table_triples(rbac.NAMESPACED) & {("", "pods/exec", v) for v in
                                                     ("get", "create")}  # its fallback
    assert asked - allowed == set(), f"{command} asks beyond its rules"


def test_roles_are_the_union_of_their_commands_rules() -> None:
    viewer = {r.key for r in rbac.rules_for("viewer")}
    operator = {r.key for r in rbac.rules_for("operator")}
    assert viewer < operator
    writers_only = {r.key for r in rbac.RULES if set(r.commands) <= {rbac.ENABLE, rbac.DISABLE}}
    assert operator - viewer == writers_only
    assert {"envoyfilters-write", "rollout"} <= writers_only
    for rule in rbac.RULES:
        assert rule.commands, f"{rule.key} serves no command"
        assert bool(rule.optional_for) == bool(rule.fallback), rule.key


# -- the YAML -------------------------------------------------------------------------------


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def as_rule(rule: rbac.Rule) -> dict[str, Any]:
    return {"apiGroups": [rule.group], "resources": [rule.resource], "verbs": list(rule.verbs)}


@pytest.mark.parametrize("role", list(rbac.ROLES))
def test_cluster_variant_is_a_cluster_role_and_its_binding(env: dict[str, str],  # noqa: F811
                                                           role: str) -> None:
    code, out, err = run(None, env, "rbac", role, "--serviceaccount", "ci:deployer",
                         "--group", "sre", "--subject-user", "ana")
    assert code == 0, err
    assert err == ""
    role_doc, binding, *root = docs_of(out)
    assert role_doc["kind"] == "ClusterRole"
    assert role_doc["metadata"]["name"] == f"kubectl-keepalive-{role}"
    expected = [as_rule(r) for r in rbac.rules_for(role, rbac.NAMESPACED)
                + rbac.rules_for(role, rbac.CLUSTER)]
    assert role_doc["rules"] == expected
    # Root-namespace reads a ClusterRole would grant everywhere get a Role of their own.
    root_rules = [as_rule(r) for r in rbac.rules_for(role, rbac.ROOT)
                  if r.key != "root-envoyfilters"]  # the ClusterRole lists filters everywhere
    assert [d["kind"] for d in root] == (["Role", "RoleBinding"] if root_rules else [])
    if root_rules:
        assert root[0]["metadata"]["namespace"] == "istio-system"
        assert root[0]["rules"] == root_rules
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role_doc["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
        {"kind": "Group", "name": "sre", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "User", "name": "ana", "apiGroup": "rbac.authorization.k8s.io"}]
    # Each rule is commented with the commands of this role that need it.
    for rule in expected:
        line = f'  resources: {json.dumps(rule["resources"])}'.replace('","', '", "')
        before = out.splitlines()[out.splitlines().index(line) - 2]
        assert before.startswith("# ") or before.startswith("#   without it:"), before
    if role == "viewer":  # the comments name only this role's commands
        said = [ln.split(":")[0] for ln in out.splitlines()
                if ln.startswith("# ") and not ln.startswith("#   ")]
        assert said and not any("enable" in ln for ln in said)


def test_namespaced_variant_has_roles_root_filters_and_a_small_cluster_role(
        env: dict[str, str]) -> None:  # noqa: F811
    code, out, _ = run(None, env, "rbac", "operator", "-n", "apps",
                       "--serviceaccount", "apps:ci", "--name", "gw-ops")
    assert code == 0
    docs = docs_of(out)
    kinds = [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs]
    assert kinds == [("Role", "gw-ops", "apps"), ("RoleBinding", "gw-ops", "apps"),
                     ("Role", "gw-ops-root", "istio-system"),
                     ("RoleBinding", "gw-ops-root", "istio-system"),
                     ("ClusterRole", "gw-ops-cluster", None),
                     ("ClusterRoleBinding", "gw-ops-cluster", None)]
    assert docs[0]["rules"] == [as_rule(r) for r in rbac.rules_for("operator", rbac.NAMESPACED)]
    assert docs[2]["rules"] == [as_rule(r) for r in rbac.rules_for("operator", rbac.ROOT)]
    assert {"apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"],
            "verbs": ["list"]} in docs[2]["rules"]
    assert docs[4]["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]
    # In the root namespace itself the namespaced Role already reads its filters.
    code, out, _ = run(None, env, "rbac", "operator", "-n", "istio-system",
                       "--serviceaccount", "a:b")
    docs = docs_of(out)
    assert [d["kind"] for d in docs] == ["Role", "RoleBinding", "ClusterRole",
                                         "ClusterRoleBinding"]
    granted = {(g, r, v) for rule in docs[0]["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert table_triples(rbac.ROOT) <= granted


def test_without_a_subject_the_placeholder_is_named_and_said(env: dict[str, str]  # noqa: F811
                                                             ) -> None:
    code, out, err = run(None, env, "rbac", "viewer")
    assert code == 0
    assert docs_of(out)[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "EDIT-ME", "namespace": "EDIT-ME"}]
    assert err.startswith("note: no subject given") and "--serviceaccount NS:NAME" in err


@pytest.mark.parametrize("argv", [
    ["rbac", "admin"],
    ["rbac", "viewer", "--serviceaccount", "no-colon"],
    ["rbac", "viewer", "--serviceaccount", "Bad_NS:x"],
    ["rbac", "viewer", "--name", "UPPER"],
])
def test_bad_rbac_flags_are_usage_errors(env: dict[str, str], argv: list[str]  # noqa: F811
                                         ) -> None:
    code, out, err = run(None, env, *argv)
    assert code == 2, err
    assert out == ""


# -- degrade, never guess: a forbidden node list is said, with what it changes ------------------


def test_doctor_says_nodes_were_not_read_and_which_balancer_is_unknown_for_it(
        env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service({})]
    fake.provider_ids = None
    code, _, err = run(fake, env, "doctor", "--duration", "10m")
    assert code != 5, err
    note = next(ln for ln in err.splitlines() if "cannot list nodes" in ln)
    assert note.startswith("note: ") and "istio-ingressgateway:80 is unknown" in note
    fake.services = [service(NLB)]
    _, _, err = run(fake, env, "doctor", "--duration", "10m")
    assert "cannot list nodes" in err and "nothing is missing" in err


def test_diff_defaults_say_the_nodes_were_not_read(env: dict[str, str]) -> None:  # noqa: F811
    fake = FakeCluster(gateway_with_dump())
    fake.services = [service({})]
    fake.provider_ids = None
    code, _, err = run(fake, env, "diff")
    assert code == 1, err
    assert "note: using idle=60s" in err and "cannot list nodes" in err


def test_permissions_page_table_lists_every_rule() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "permissions.md").read_text()
    rows = [ln for ln in page.splitlines() if ln.startswith("| `")]
    where = {rbac.NAMESPACED: "gateway namespace", rbac.CLUSTER: "cluster",
             rbac.ROOT: "Istio root namespace"}
    expected = [f"| `{r.qualified}` | {', '.join(r.verbs)} | {where[r.scope]} |"
                for r in rbac.RULES]
    assert len(rows) == len(expected)
    assert [row[:len(e)] for row, e in zip(rows, expected)] == expected
