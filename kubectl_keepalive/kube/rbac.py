"""The rights each command needs, as data, and the Roles `kubectl keepalive rbac` prints. Pure.

One table: every rule names the commands that fail without it (`needed_by`) and those that go on
without it and say what they could not see (`optional_for`, `fallback`). The unit tests check
the table against every request the `kube` adapter can send, and the cluster tests remove each
rule in turn from the printed Roles, so neither can drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kubectl_keepalive.errors import UsageError

# The commands as the table names them; `status --sockets` needs more than `status`.
STATUS = "status"
SOCKETS = "status --sockets"
DIFF = "diff"
DOCTOR = "doctor"
ENABLE = "enable"
DISABLE = "disable"
READERS = (STATUS, SOCKETS, DIFF, DOCTOR)
ROLES: dict[str, tuple[str, ...]] = {"viewer": READERS, "operator": (*READERS, ENABLE, DISABLE)}

NAMESPACED = "namespace"  # in the gateways' namespace (every namespace for the ClusterRole)
CLUSTER = "cluster"  # a cluster-scoped resource: always a ClusterRole
ROOT = "root"  # Istio's root namespace; only the -n variant needs it apart

RBAC_API = "rbac.authorization.k8s.io"
PLACEHOLDER = "EDIT-ME"  # not a valid name: `kubectl apply` refuses the binding until edited


@dataclass(frozen=True)
class Rule:
    key: str
    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    needed_by: tuple[str, ...] = ()  # these commands exit 3 without the rule
    optional_for: tuple[str, ...] = ()  # these go on without it and say what they missed
    fallback: str = ""
    scope: str = NAMESPACED

    @property
    def commands(self) -> tuple[str, ...]:
        return tuple(c for c in (*READERS, ENABLE, DISABLE)
                     if c in self.needed_by or c in self.optional_for)

    @property
    def qualified(self) -> str:
        """The resource as the API server's 403 and the plugin's errors name it."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


_ALL_READERS = (STATUS, SOCKETS, DIFF, DOCTOR, ENABLE, DISABLE)
_PLANNERS = (STATUS, SOCKETS, DIFF, ENABLE, DISABLE)

RULES: tuple[Rule, ...] = (
    Rule("pods", "", "pods", ("list",),
         "find the gateway pods (-l, or the installers' well-known labels)",
         needed_by=_ALL_READERS),
    Rule("deployments", "apps", "deployments", ("get", "list"),
         "group pods into gateways; read a rollout's progress before and after a restart",
         needed_by=_ALL_READERS),
    Rule("envoyfilters", "networking.istio.io", "envoyfilters", ("get", "list"),
         "find our filter and foreign filters that set keepalive on the same port",
         needed_by=_PLANNERS),
    Rule("services", "", "services", ("list",),
         "find the balancer in front of the gateway and its idle timeout",
         needed_by=(DIFF, DOCTOR, ENABLE)),
    Rule("portforward", "", "pods/portforward", ("get", "create"),
         "read Envoy admin (port 15000) of each gateway pod; websockets need create from "
         "Kubernetes 1.35",
         optional_for=_ALL_READERS,
         fallback="Envoy admin is read through `kubectl exec ... pilot-agent request` instead "
                  "(needs pods/exec); a note says so"),
    Rule("exec", "", "pods/exec", ("get", "create"),
         "run `ss` in istio-proxy to count connections with kernel keepalive timers; read "
         "Envoy admin when port-forward is forbidden",
         optional_for=(SOCKETS,),
         fallback="status --sockets shows the listeners and, per pod, that the sockets were "
                  "not read and why"),
    Rule("nodes", "", "nodes", ("list",),
         "nodes' spec.providerID tells the cloud when the Service does not",
         optional_for=(DIFF, DOCTOR, ENABLE),
         fallback="the balancer is told from the Service alone; a note names the Services "
                  "whose balancer is then unknown (diff and enable keep the default settings)",
         scope=CLUSTER),
    Rule("root-envoyfilters", "networking.istio.io", "envoyfilters", ("list",),
         "filters in Istio's root namespace reach every gateway: check them for keepalive too",
         optional_for=_PLANNERS,
         fallback="a note says filters in the root namespace were not checked",
         scope=ROOT),
    Rule("mesh-config", "", "configmaps", ("get",),
         "the mesh config (ConfigMap istio or istio-REVISION) in Istio's root namespace: "
         "mesh-wide drain settings",
         optional_for=(DIFF, ENABLE, DISABLE),
         fallback="a note says the mesh-wide drain settings are unknown; Istio's defaults "
                  "are shown",
         scope=ROOT),
    Rule("envoyfilters-write", "networking.istio.io", "envoyfilters",
         ("create", "patch", "delete"),
         "write the managed filter (create, update with a JSON patch, delete)",
         needed_by=(ENABLE, DISABLE)),
    Rule("rollout", "apps", "deployments", ("patch",),
         "roll the gateway as `kubectl rollout restart` does (not with --no-restart)",
         needed_by=(ENABLE, DISABLE)),
)


def rules_for(role: str, scope: str | None = None) -> list[Rule]:
    """The rules a role needs; with `scope`, only those of that scope."""
    commands = set(role_commands(role))
    return [r for r in RULES if commands & set(r.commands) and scope in (None, r.scope)]


def role_commands(role: str) -> tuple[str, ...]:
    try:
        return ROLES[role]
    except KeyError:
        raise UsageError(f"unknown role {role!r}: choose {' or '.join(ROLES)}") from None


@dataclass(frozen=True)
class Subject:
    kind: str  # ServiceAccount, User or Group
    name: str
    namespace: str | None = None


def placeholder() -> Subject:
    return Subject("ServiceAccount", PLACEHOLDER, PLACEHOLDER)


def service_account(value: str) -> Subject:
    """NS:NAME, as `kubectl create rolebinding --serviceaccount` takes it."""
    namespace, sep, name = value.partition(":")
    if not sep or not namespace or not name:
        raise UsageError(f"--serviceaccount {value!r}: expected NAMESPACE:NAME")
    return Subject("ServiceAccount", name, namespace)


# -- YAML ---------------------------------------------------------------------------------------


def render(role: str, subjects: Sequence[Subject], namespace: str | None = None,
           root_namespace: str = "istio-system", name: str | None = None) -> str:
    """Ready-to-apply YAML: a ClusterRole and its binding, or with `namespace` a Role there and
    a small ClusterRole for cluster-scoped reads; reads in Istio's root namespace that the first
    Role does not already grant get a Role of their own there."""
    name = name or f"kubectl-keepalive-{role}"
    head = f"# kubectl-keepalive {role}: {', '.join(role_commands(role))}\n"
    if namespace is None:
        main = rules_for(role, NAMESPACED) + rules_for(role, CLUSTER)
        docs = [_role("ClusterRole", name, None, main, role),
                _binding("ClusterRole", name, None, subjects)]
    else:
        main = rules_for(role, NAMESPACED)
        if namespace == root_namespace:
            main += _uncovered(rules_for(role, ROOT), main)
        docs = [_role("Role", name, namespace, main, role),
                _binding("Role", name, namespace, subjects)]
    # A Role elsewhere grants nothing in the root namespace; a ClusterRole may already.
    root = (rules_for(role, ROOT) if namespace not in (None, root_namespace)
            else _uncovered(rules_for(role, ROOT), main))
    if root:
        docs += [_role("Role", f"{name}-root", root_namespace, root, role),
                 _binding("Role", f"{name}-root", root_namespace, subjects)]
    cluster = rules_for(role, CLUSTER)
    if namespace is not None and cluster:
        docs += [_role("ClusterRole", f"{name}-cluster", None, cluster, role),
                 _binding("ClusterRole", f"{name}-cluster", None, subjects)]
    return head + _join(docs)


def _uncovered(rules: Sequence[Rule], granted: Sequence[Rule]) -> list[Rule]:
    """The rules whose verbs `granted` (on the same resource, in every namespace) lacks."""
    have = {(r.group, r.resource, v) for r in granted for v in r.verbs}
    return [r for r in rules if any((r.group, r.resource, v) not in have for v in r.verbs)]


def _join(docs: Iterable[str]) -> str:
    return "---\n".join(docs)


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML scalar that never changes type


def _flow(values: Iterable[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _metadata(name: str, namespace: str | None) -> str:
    text = f"metadata:\n  name: {_q(name)}\n"
    return text + (f"  namespace: {_q(namespace)}\n" if namespace else "")


def _role(kind: str, name: str, namespace: str | None, rules: Sequence[Rule], role: str) -> str:
    text = f"apiVersion: {RBAC_API}/v1\nkind: {kind}\n" + _metadata(name, namespace)
    text += "rules:\n"
    for rule in rules:
        commands = [c for c in rule.commands if c in role_commands(role)]
        text += f"# {', '.join(commands)}: {rule.why}\n"
        if rule.optional_for:
            text += f"#   without it: {rule.fallback}\n"
        text += (f"- apiGroups: {_flow([rule.group])}\n"
                 f"  resources: {_flow([rule.resource])}\n"
                 f"  verbs: {_flow(rule.verbs)}\n")
    return text


def _binding(kind: str, name: str, namespace: str | None, subjects: Sequence[Subject]) -> str:
    text = (f"apiVersion: {RBAC_API}/v1\nkind: {kind}Binding\n" + _metadata(name, namespace)
            + f"roleRef:\n  apiGroup: {RBAC_API}\n  kind: {kind}\n  name: {_q(name)}\n"
            + "subjects:\n")
    for subject in subjects:
        text += f"- kind: {subject.kind}\n  name: {_q(subject.name)}\n"
        if subject.namespace is not None:
            text += f"  namespace: {_q(subject.namespace)}\n"
        else:
            text += f"  apiGroup: {RBAC_API}\n"
    return text
