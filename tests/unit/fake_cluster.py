"""FakeCluster: an in-memory stand-in for `cluster.Cluster`, for unit tests of the use cases.

A FAKE, not a Kubernetes API: it has no RBAC, admission, schemas or controllers. The lab-cluster
tier (tests/cluster) runs the same use cases against a real kube-apiserver. Here it lets the
unit tests drive plans, idempotency, conflicts, rollouts and verification deterministically.
Envoy is imitated by building each pod's listener dump from its gateway's ports plus the socket
options of the EnvoyFilters that select it (MERGE appends), when `propagate` is on. istiod's
delay is imitated by `push_after_reads`: that many admin reads after a filter change still
show the filters as they were before it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from kubectl_keepalive.errors import (
    AlreadyExists,
    ClusterError,
    ForbiddenError,
    KeepaliveError,
    UnavailableError,
)
from kubectl_keepalive.kube import labelselector
from kubectl_keepalive.kube.cluster import AdminRead, Condition, RolloutState
from kubectl_keepalive.model import Deployment, Pod


@dataclass
class FakeGateway:
    namespace: str
    name: str
    labels: dict[str, str]
    ports: list[int]
    udp_ports: list[int] = field(default_factory=list)
    replicas: int = 1
    paused: bool = False
    template_hash: str = "aaaa1"
    generation: int = 1
    rollout_reads_until_done: int = 1
    never_available: bool = False
    full_dump: str | None = None  # what a full /config_dump returns (the doctor reads it)
    # The Deployment's matchLabels when they are fewer than the pod labels (None: the same).
    selector: dict[str, str] | None = None
    # What the pods run: istio-proxy with `proxy router` args, as the gateway template makes.
    containers: tuple[str, ...] = ("istio-proxy",)
    args: tuple[str, ...] = ("proxy", "router")
    # The pods' `proxy.istio.io/config` annotation and terminationGracePeriodSeconds.
    proxy_config: str | None = None
    grace_seconds: int | None = None


class FakeCluster:
    """See the module docstring: a fake, named so; writes are recorded for assertions."""

    def __init__(self, *gateways: FakeGateway, propagate: bool = True) -> None:
        self.gateways = list(gateways)
        self.filters: dict[tuple[str, str], dict[str, Any]] = {}
        self.propagate = propagate
        self.writes: list[tuple[str, str, str]] = []
        self.forbid_port_forward = False
        self.extra_options: dict[str, list[dict[str, Any]]] = {}
        self._rollout_reads: dict[str, int] = {}
        self._version = 100
        self.notices: list[str] = []
        self.services: list[dict[str, Any]] = []
        self.provider_ids: list[str] | None = []
        self.push_after_reads = 0
        self._reads_before_push = 0
        self._istiod_view: dict[tuple[str, str], dict[str, Any]] = {}
        # Per restart: had the pods been shown the current filters when it was ordered?
        self.pushed_at_restart: list[bool] = []
        self.admin_reads: list[str] = []  # namespace/pod of every Envoy admin read
        # Envoy stats: requests in flight per pod ("ns/gateway/port"), until `quiet_after`
        # stats reads (None: never quiet by itself); one more idle connection on each port.
        self.in_flight: dict[str, int] = {}
        self.quiet_after: int | None = None
        self.stats_reads = 0
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        self.forbid_configmaps = False
        self.envoy_version = "1.40.0"  # what /server_info says
        # verb -> how many more calls of it fail as an API server that does not answer would.
        self.unavailable: dict[str, int] = {}

    def _answer(self, verb: str) -> None:
        if self.unavailable.get(verb, 0) > 0:
            self.unavailable[verb] -= 1
            raise UnavailableError(f"cannot reach the API server: {verb}: connection refused")

    # -- pods --------------------------------------------------------------------------------

    def _pods_of(self, gw: FakeGateway) -> list[Pod]:
        labels = {**gw.labels, "pod-template-hash": gw.template_hash}
        return [
            Pod(gw.namespace, f"{gw.name}-{gw.template_hash}-{i}", labels, "Running", True, False,
                f"{gw.name}-{gw.template_hash}", gw.containers,
                proxy_args=gw.args if "istio-proxy" in gw.containers else (),
                proxy_config=gw.proxy_config, grace_period=gw.grace_seconds)
            for i in range(gw.replicas)
        ]

    def list_pods(self, namespace: str | None, selector: str) -> list[Pod]:
        self._answer("list_pods")
        pods = []
        for gw in self.gateways:
            if namespace and gw.namespace != namespace:
                continue
            for pod in self._pods_of(gw):
                if _matches(pod.labels, selector):
                    pods.append(pod)
        return pods

    def list_deployments(self, namespace: str | None) -> list[Deployment]:
        return [
            Deployment(gw.namespace, gw.name, dict(gw.selector or gw.labels), dict(gw.labels),
                       gw.paused, gw.replicas, gw.generation)
            for gw in self.gateways
            if not namespace or gw.namespace == namespace
        ]

    def _gateway(self, namespace: str, name: str) -> FakeGateway:
        return next(g for g in self.gateways if (g.namespace, g.name) == (namespace, name))

    def rollout_state(self, namespace: str, name: str) -> RolloutState:
        self._answer("rollout_state")
        gw = self._gateway(namespace, name)
        key = f"{namespace}/{name}"
        self._rollout_reads[key] = self._rollout_reads.get(key, 0) + 1
        done = self._rollout_reads[key] >= gw.rollout_reads_until_done and not gw.never_available
        return RolloutState(gw.generation, gw.generation, gw.replicas, gw.replicas,
                            gw.replicas, gw.replicas if done else 0, gw.paused,
                            (Condition("Progressing", "True", "NewReplicaSetAvailable"),))

    def restart_deployment(self, namespace: str, name: str, at: str, dry_run: bool) -> None:
        self._answer("restart_deployment")
        self.writes.append(("restart", f"{namespace}/{name}", at))
        self.pushed_at_restart.append(self._istiod_view == self.filters)
        if dry_run:
            return
        gw = self._gateway(namespace, name)
        gw.generation += 1
        gw.template_hash = f"h{gw.generation}"
        self._rollout_reads[f"{namespace}/{name}"] = 0

    # -- EnvoyFilters ------------------------------------------------------------------------

    def list_envoyfilters(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(f) for (ns, _), f in sorted(self.filters.items())
                if not namespace or ns == namespace]

    def get_envoyfilter(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.filters.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def add_filter(self, body: dict[str, Any]) -> None:
        body = copy.deepcopy(body)
        self._version += 1
        body["metadata"]["resourceVersion"] = str(self._version)
        self.filters[(body["metadata"]["namespace"], body["metadata"]["name"])] = body
        self._reads_before_push = self.push_after_reads

    def create_envoyfilter(self, namespace: str, body: dict[str, Any],
                           dry_run: bool) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        if key in self.filters:
            raise AlreadyExists(*key)
        self.writes.append(("create", f"{namespace}/{key[1]}", "dry" if dry_run else ""))
        if not dry_run:
            self.add_filter(body)
        return body

    def patch_envoyfilter(self, namespace: str, name: str, operations: list[dict[str, Any]],
                          dry_run: bool) -> dict[str, Any]:
        import jsonpatch

        self.writes.append(("patch", f"{namespace}/{name}", json.dumps(operations)))
        patched: dict[str, Any] = jsonpatch.apply_patch(self.filters[(namespace, name)],
                                                        operations)
        if not dry_run:
            self.add_filter(patched)
        return patched

    def delete_envoyfilter(self, namespace: str, name: str, resource_version: str,
                           dry_run: bool) -> None:
        self.writes.append(("delete", f"{namespace}/{name}", resource_version))
        if not dry_run:
            del self.filters[(namespace, name)]
            self._reads_before_push = self.push_after_reads

    # -- Envoy admin -------------------------------------------------------------------------

    def read_admin_all(self, pod: Pod, paths: list[str], timeout: float) -> list[AdminRead]:
        """As KubeCluster: the first read's failure raises, a later one's is its error."""
        reads = [self.read_admin(pod, paths[0], timeout)]
        for path in paths[1:]:
            try:
                reads.append(self.read_admin(pod, path, timeout))
            except KeepaliveError as exc:
                reads.append(AdminRead(b"", reads[0].via, str(exc)))
        return reads

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        self.admin_reads.append(f"{pod.namespace}/{pod.name}")
        if "istio-proxy" not in pod.containers:
            raise ClusterError(f"pod {pod.name}: nothing listens on the Envoy admin port 15000")
        if self._reads_before_push > 0:
            self._reads_before_push -= 1
        else:
            self._istiod_view = copy.deepcopy(self.filters)
        if self.forbid_port_forward and not self.notices:
            self.notices.append("port-forward forbidden; read through exec")
        gw = next(g for g in self.gateways if pod.name.startswith(f"{g.name}-")
                  and g.namespace == pod.namespace)
        if gw.template_hash not in pod.name:
            raise ForbiddenError("pod is gone")
        if path == "server_info":
            info = {"version": f"0123abcd/{self.envoy_version}/Clean/RELEASE/BoringSSL"}
            return AdminRead(json.dumps(info).encode(), "port-forward")
        if path.startswith("stats"):
            return AdminRead(self._stats(gw).encode(), "port-forward")
        if path == "config_dump" and gw.full_dump is not None:
            return AdminRead(gw.full_dump.encode(), "port-forward")
        dynamic = []
        for port in gw.ports:
            dynamic.append(self._listener(gw, f"0.0.0.0_{port}", port, "TCP"))
        for port in gw.udp_ports:
            dynamic.append(self._listener(gw, f"udp_0.0.0.0_{port}", port, "UDP"))
        dump = {"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                             "dynamic_listeners": dynamic}]}
        return AdminRead(json.dumps(dump).encode(), "exec" if self.forbid_port_forward
                         else "port-forward")

    def _listener(self, gw: FakeGateway, name: str, port: int, protocol: str) -> dict[str, Any]:
        options = list(self.extra_options.get(f"{gw.namespace}/{gw.name}/{port}", []))
        if self.propagate:
            for obj in self._istiod_view.values():
                selector = obj["spec"].get("workloadSelector", {}).get("labels", {})
                if any(gw.labels.get(k) != v for k, v in selector.items()):
                    continue
                for patch in obj["spec"]["configPatches"]:
                    match = patch["match"]["listener"]
                    if match.get("portNumber") == port and match.get("name", name) == name:
                        options.extend(patch["patch"]["value"].get("socket_options", []))
        address: dict[str, Any] = {"address": "0.0.0.0", "port_value": port}
        if protocol == "UDP":
            address["protocol"] = "UDP"
        listener: dict[str, Any] = {"name": name, "address": {"socket_address": address}}
        if protocol == "TCP":
            hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                   "stat_prefix": f"outbound_{name}"}
            listener["filter_chains"] = [{"filters": [{"typed_config": hcm}]}]
        if options:
            listener["socket_options"] = [
                {k: str(v) if k in ("level", "name", "int_value") else v for k, v in o.items()}
                for o in options]
        return {"name": name, "active_state": {"listener": listener}}

    def _stats(self, gw: FakeGateway) -> str:
        """/stats as Envoy prints it: the listener's connections, the HTTP manager's requests."""
        self.stats_reads += 1
        quiet = self.quiet_after is not None and self.stats_reads > self.quiet_after
        lines = []
        for port in gw.ports:
            busy = 0 if quiet else self.in_flight.get(f"{gw.namespace}/{gw.name}/{port}", 0)
            lines += [f"http.outbound_0.0.0.0_{port}.downstream_cx_active: {busy + 1}",
                      f"http.outbound_0.0.0.0_{port}.downstream_rq_active: {busy}",
                      f"listener.0.0.0.0_{port}.downstream_cx_active: {busy + 1}"]
        return "\n".join([*lines, "listener.admin.downstream_cx_active: 1"]) + "\n"

    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        if self.forbid_configmaps:
            raise ForbiddenError(f"configmaps \"{name}\" is forbidden: cannot get configmaps "
                                 f"in namespace {namespace}")
        found = self.configmaps.get((namespace, name))
        return dict(found) if found is not None else None

    def exec_proxy(self, pod: Pod, command: list[str], timeout: float) -> bytes:
        """`ss` output: one established connection per gateway port, with keepalive timers
        only when the fake Envoy's listener has SO_KEEPALIVE (what the kernel would do)."""
        dump = json.loads(self.read_admin(pod, "", timeout).body)
        lines = []
        for entry in dump["configs"][0]["dynamic_listeners"]:
            listener = entry["active_state"]["listener"]
            port = listener["address"]["socket_address"]["port_value"]
            on = any(str(o.get("name")) == "9" and str(o.get("int_value")) == "1"
                     for o in listener.get("socket_options", []))
            timer = " timer:(keepalive,59sec,0)" if on else ""
            lines.append(f"0 0 10.0.0.1:{port} 10.0.0.9:50000{timer}")
        return "\n".join(lines).encode()

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(s) for s in self.services
                if not namespace or s["metadata"]["namespace"] == namespace]

    def node_provider_ids(self) -> list[str] | None:
        return list(self.provider_ids) if self.provider_ids is not None else None

    def describe(self) -> str:
        return "fake cluster"


def _matches(labels: dict[str, str], selector: str) -> bool:
    return labelselector.matches(selector, labels)


# -- proxies as their installers label them (sources in kubectl_keepalive/istio/discovery.py) -

GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"
GATEWAY_CLASS = "gateway.networking.k8s.io/gateway-class-name"
MANAGED = "gateway.istio.io/managed"


def iop_ingress() -> FakeGateway:
    return FakeGateway("istio-system", "istio-ingressgateway",
                       {"app": "istio-ingressgateway", "istio": "ingressgateway"}, [8080, 8443])


def iop_egress() -> FakeGateway:
    """IstioOperator / legacy istio-egress chart."""
    return FakeGateway("istio-system", "istio-egressgateway",
                       {"app": "istio-egressgateway", "istio": "egressgateway"}, [8080, 8443])


def helm_gateway(release: str, namespace: str, ports: list[int],
                 network: str | None = None) -> FakeGateway:
    """`helm install RELEASE istio/gateway` (plus `--set networkGateway=NET`): app and istio
    from the release name, the chart's own labels, the network label in the template."""
    labels = {"app": release, "istio": release.removeprefix("istio-"),
              "app.kubernetes.io/name": release, "app.kubernetes.io/instance": release,
              "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "istio",
              "app.kubernetes.io/version": "1.31.0", "helm.sh/chart": "gateway-1.31.0",
              "sidecar.istio.io/inject": "true"}
    if network:
        labels["topology.istio.io/network"] = network
    return FakeGateway(namespace, release, labels, ports,
                       selector={"app": release, "istio": labels["istio"]})


def iop_east_west(network: str = "network1") -> FakeGateway:
    """samples/multicluster/gen-eastwest-gateway.sh --network NET."""
    return FakeGateway("istio-system", "istio-eastwestgateway",
                       {"app": "istio-eastwestgateway", "istio": "eastwestgateway",
                        "topology.istio.io/network": network}, [15443, 15012, 15017])


def gateway_api(name: str, namespace: str, gateway_class: str, managed: str,
                args: tuple[str, ...] = ("proxy", "router"), ports: tuple[int, ...] = (80,),
                containers: tuple[str, ...] = ("istio-proxy",)) -> FakeGateway:
    """A Deployment istiod renders for a Gateway (kube-gateway.yaml, waypoint.yaml,
    agentgateway.yaml): selected by the gateway-name label alone."""
    labels = {GATEWAY_NAME: name, GATEWAY_CLASS: gateway_class, MANAGED: managed,
              "istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "false",
              "service.istio.io/canonical-name": name,
              "service.istio.io/canonical-revision": "latest"}
    return FakeGateway(namespace, name, labels, list(ports), selector={GATEWAY_NAME: name},
                       containers=containers, args=args)


def ambient_waypoint(namespace: str = "apps") -> FakeGateway:
    return gateway_api("waypoint", namespace, "istio-waypoint", "istio.io-mesh-controller",
                       ("proxy", "waypoint"), (15008,))


def ambient_east_west(namespace: str = "istio-system") -> FakeGateway:
    """gen-eastwest-gateway.sh --ambient: rendered from the waypoint template."""
    return gateway_api("istio-eastwestgateway", namespace, "istio-east-west",
                       "istio.io-eastwest-controller", ("proxy", "waypoint"), (15008,))


def gateway_api_ingress(name: str = "web", namespace: str = "istio-system") -> FakeGateway:
    return gateway_api(name, namespace, "istio", "istio.io-gateway-controller")


def agentgateway(name: str = "agw", namespace: str = "istio-system") -> FakeGateway:
    return gateway_api(name, namespace, "istio-agentgateway", "istio.io-agentgateway-controller",
                       (), (80,), ("agentgateway",))
