"""The one module that talks to Kubernetes (and the only one importing `kubernetes`).

Reads go through raw JSON (`_preload_content=False`) because the client's model classes are slow
and the plugin needs only a few fields. Every write names its content type and field manager.
`ApiException`s become the project's errors here, with the RBAC verb and resource named.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

from kubectl_keepalive.cluster import FIELD_MANAGER, AdminRead, Condition, RolloutState
from kubectl_keepalive.errors import ClusterError, ForbiddenError, KeepaliveError
from kubectl_keepalive.kubeconfig import ResolvedConfig
from kubectl_keepalive.model import Deployment, Pod

ISTIO_GROUP = "networking.istio.io"
ENVOYFILTER_VERSION = "v1alpha3"  # the only version EnvoyFilter is served as
ENVOYFILTER_PLURAL = "envoyfilters"
ADMIN_PORT = 15000
PROXY_CONTAINER = "istio-proxy"
REQUEST_TIMEOUT = 30.0


class KubeCluster:
    """`cluster.Cluster` on a real API server."""

    def __init__(self, resolved: ResolvedConfig | None) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            if resolved is None:
                config.load_incluster_config(client_configuration=configuration)
                self._where = f"in-cluster API server {configuration.host}"
            else:
                config.load_kube_config_from_dict(
                    resolved.config,
                    context=resolved.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                self._where = f"{configuration.host} (context {resolved.context})"
        except config.ConfigException as exc:
            raise ClusterError(f"cannot use the kubeconfig: {exc}") from None
        # One retry at most: an unreachable server should be reported, not waited on.
        configuration.retries = 1
        self._configuration = configuration
        self._api = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._api)
        self._apps = client.AppsV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._exec_only = False  # set once port-forward was refused, to stop asking
        self._lock = threading.Lock()
        self.requests = 0
        self.notices: list[str] = []

    def describe(self) -> str:
        return self._where

    # -- errors ---------------------------------------------------------------------------

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _call(self, verb: str, resource: str, namespace: str | None, fn: Any, *a: Any,
              **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        self._count()
        kw.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return fn(*a, **kw)
        except ApiException as exc:
            raise self._translate(exc, verb, resource, namespace) from None
        except (HTTPError, OSError) as exc:
            raise ClusterError(f"cannot reach the API server at {self._where}: {exc}") from None

    def _translate(self, exc: Any, verb: str, resource: str, namespace: str | None) -> Exception:
        where = f"in namespace {namespace}" if namespace else "at cluster scope"
        status = int(getattr(exc, "status", 0) or 0)
        if status in (401, 403):
            who = "unauthorized (401)" if status == 401 else "forbidden (403)"
            return ForbiddenError(
                f"{who}: cannot {verb} {resource} {where}: RBAC must allow "
                f"verb {verb!r} on {resource!r} ({_reason(exc)})"
            )
        if status == 404 and resource.startswith(ENVOYFILTER_PLURAL) and verb == "list":
            return ClusterError(
                "the EnvoyFilter API (networking.istio.io/v1alpha3) is not served by "
                f"{self._where}: Istio does not seem to be installed"
            )
        return ClusterError(f"{verb} {resource} {where} failed: {status} {_reason(exc)}")

    def _json(self, response: Any) -> Any:
        return json.loads(response.data)

    # -- pods and deployments ------------------------------------------------------------

    def list_pods(self, namespace: str | None, selector: str) -> list[Pod]:
        if namespace:
            raw = self._call("list", "pods", namespace, self._core.list_namespaced_pod,
                             namespace, label_selector=selector, _preload_content=False)
        else:
            raw = self._call("list", "pods", None, self._core.list_pod_for_all_namespaces,
                             label_selector=selector, _preload_content=False)
        return [_pod(item) for item in self._json(raw).get("items", [])]

    def list_deployments(self, namespace: str | None) -> list[Deployment]:
        if namespace:
            raw = self._call("list", "deployments.apps", namespace,
                             self._apps.list_namespaced_deployment, namespace,
                             _preload_content=False)
        else:
            raw = self._call("list", "deployments.apps", None,
                             self._apps.list_deployment_for_all_namespaces,
                             _preload_content=False)
        return [_deployment(item) for item in self._json(raw).get("items", [])]

    def rollout_state(self, namespace: str, name: str) -> RolloutState:
        raw = self._call("get", "deployments.apps", namespace,
                         self._apps.read_namespaced_deployment, name, namespace,
                         _preload_content=False)
        return _rollout_state(self._json(raw))

    def restart_deployment(self, namespace: str, name: str, at: str, dry_run: bool) -> None:
        # What `kubectl rollout restart` sends: a new pod-template annotation, nothing else.
        body = {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}}
        self._call("patch", "deployments.apps", namespace,
                   self._apps.patch_namespaced_deployment, name, namespace, body,
                   field_manager=FIELD_MANAGER, dry_run="All" if dry_run else None,
                   _content_type="application/strategic-merge-patch+json")

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace:
            raw = self._call("list", "services", namespace, self._core.list_namespaced_service,
                             namespace, _preload_content=False)
        else:
            raw = self._call("list", "services", None,
                             self._core.list_service_for_all_namespaces, _preload_content=False)
        return [i for i in self._json(raw).get("items", []) if isinstance(i, dict)]

    def node_provider_ids(self) -> list[str] | None:
        try:
            raw = self._call("list", "nodes", None, self._core.list_node, _preload_content=False)
        except ForbiddenError:
            return None  # a namespaced user: the cloud is then read from the Service alone
        items = self._json(raw).get("items", [])
        return [str((i.get("spec") or {}).get("providerID", "")) for i in items]

    # -- EnvoyFilters --------------------------------------------------------------------

    def list_envoyfilters(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace:
            raw = self._call("list", "envoyfilters.networking.istio.io", namespace,
                             self._custom.list_namespaced_custom_object, ISTIO_GROUP,
                             ENVOYFILTER_VERSION, namespace, ENVOYFILTER_PLURAL,
                             _preload_content=False)
        else:
            raw = self._call("list", "envoyfilters.networking.istio.io", None,
                             self._custom.list_cluster_custom_object, ISTIO_GROUP,
                             ENVOYFILTER_VERSION, ENVOYFILTER_PLURAL, _preload_content=False)
        items = self._json(raw).get("items", [])
        return [item for item in items if isinstance(item, dict)]

    def get_envoyfilter(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        self._count()
        try:
            raw = self._custom.get_namespaced_custom_object(
                ISTIO_GROUP, ENVOYFILTER_VERSION, namespace, ENVOYFILTER_PLURAL, name,
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._translate(exc, "get", "envoyfilters.networking.istio.io",
                                  namespace) from None
        result: dict[str, Any] = self._json(raw)
        return result

    def create_envoyfilter(self, namespace: str, body: dict[str, Any],
                           dry_run: bool) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        self._count()
        try:
            raw = self._custom.create_namespaced_custom_object(
                ISTIO_GROUP, ENVOYFILTER_VERSION, namespace, ENVOYFILTER_PLURAL, body,
                field_manager=FIELD_MANAGER, dry_run="All" if dry_run else None,
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(namespace, body["metadata"]["name"]) from None
            raise self._translate(exc, "create", "envoyfilters.networking.istio.io",
                                  namespace) from None
        result: dict[str, Any] = self._json(raw)
        return result

    def patch_envoyfilter(self, namespace: str, name: str, operations: list[dict[str, Any]],
                          dry_run: bool) -> dict[str, Any]:
        raw = self._call("patch", "envoyfilters.networking.istio.io", namespace,
                         self._custom.patch_namespaced_custom_object, ISTIO_GROUP,
                         ENVOYFILTER_VERSION, namespace, ENVOYFILTER_PLURAL, name, operations,
                         field_manager=FIELD_MANAGER, dry_run="All" if dry_run else None,
                         _content_type="application/json-patch+json", _preload_content=False)
        result: dict[str, Any] = self._json(raw)
        return result

    def delete_envoyfilter(self, namespace: str, name: str, resource_version: str,
                           dry_run: bool) -> None:
        from kubernetes import client

        # The precondition makes a concurrent edit fail the delete instead of being lost.
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=resource_version),
            dry_run=["All"] if dry_run else None)
        self._call("delete", "envoyfilters.networking.istio.io", namespace,
                   self._custom.delete_namespaced_custom_object, ISTIO_GROUP,
                   ENVOYFILTER_VERSION, namespace, ENVOYFILTER_PLURAL, name, body=options,
                   _preload_content=False)

    # -- Envoy admin -----------------------------------------------------------------------

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        """GET an admin path: port-forward to 15000, or exec `pilot-agent request` if refused."""
        if not self._exec_only:
            try:
                return AdminRead(self._admin_via_port_forward(pod, path, timeout), "port-forward")
            except ForbiddenError:
                with self._lock:
                    if not self._exec_only:
                        self._exec_only = True
                        self.notices.append(
                            "port-forward to pods is forbidden (RBAC: get/create "
                            "pods/portforward); reading Envoy admin through "
                            f"`kubectl exec -c {PROXY_CONTAINER} -- pilot-agent request` instead"
                        )
        return AdminRead(self._admin_via_exec(pod, path, timeout), "exec")

    def _stream_api(self) -> Any:
        """A client of its own for each stream: the client's stream helpers swap the ApiClient's
        transport for the call's duration, which would break calls running in other threads."""
        from kubernetes import client

        return client.CoreV1Api(client.ApiClient(self._configuration))

    def _admin_via_port_forward(self, pod: Pod, path: str, timeout: float) -> bytes:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import portforward

        self._count()
        core = self._stream_api()
        try:
            forward = portforward(core.connect_get_namespaced_pod_portforward, pod.name,
                                  pod.namespace, ports=str(ADMIN_PORT),
                                  _request_timeout=timeout)
        except ApiException as exc:
            if _is_forbidden(exc):
                raise ForbiddenError(
                    f"forbidden (403): cannot create pods/portforward in namespace "
                    f"{pod.namespace}") from None
            raise ClusterError(
                f"port-forward to {pod.namespace}/{pod.name}:{ADMIN_PORT} failed: "
                f"{_reason(exc)}") from None
        try:
            sock = forward.socket(ADMIN_PORT)
            sock.settimeout(timeout)
            request = (f"GET /{path.lstrip('/')} HTTP/1.1\r\nHost: localhost\r\n"
                       "Connection: close\r\n\r\n")
            sock.sendall(request.encode())
            response = http.client.HTTPResponse(sock)
            try:
                response.begin()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                detail = forward.error(ADMIN_PORT) or str(exc) or type(exc).__name__
                raise ClusterError(
                    f"reading Envoy admin of {pod.namespace}/{pod.name} through port-forward "
                    f"failed: {detail}") from None
            if response.status != 200:
                raise ClusterError(
                    f"Envoy admin of {pod.namespace}/{pod.name} answered {response.status} "
                    f"to GET /{path}")
            return body
        finally:
            forward.close()

    def _admin_via_exec(self, pod: Pod, path: str, timeout: float) -> bytes:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        self._count()
        command = ["pilot-agent", "request", "GET", path]
        core = self._stream_api()
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, pod.name, pod.namespace,
                        container=PROXY_CONTAINER, command=command, stderr=True, stdin=False,
                        stdout=True, tty=False, _preload_content=False, binary=True)
        except ApiException as exc:
            if _is_forbidden(exc):
                raise ForbiddenError(
                    "forbidden (403): cannot read Envoy admin: RBAC allows neither "
                    f"pods/portforward nor pods/exec in namespace {pod.namespace}") from None
            raise ClusterError(
                f"exec in {pod.namespace}/{pod.name} failed: {_reason(exc)}") from None
        try:
            ws.run_forever(timeout=timeout)
            if ws.is_open():
                raise ClusterError(
                    f"exec of pilot-agent in {pod.namespace}/{pod.name} did not finish "
                    f"within {timeout:.0f}s")
            out = ws.read_stdout()
            err = ws.read_stderr()
            code = ws.returncode
        finally:
            ws.close()
        out_bytes = out.encode() if isinstance(out, str) else bytes(out or b"")
        if code not in (0, None):
            text = err.decode(errors="replace") if isinstance(err, bytes) else str(err or "")
            raise ClusterError(
                f"`pilot-agent request GET {path}` in {pod.namespace}/{pod.name} exited "
                f"{code}: {text.strip()[:200]}")
        return out_bytes


class AlreadyExists(KeepaliveError):
    """Create lost a race: the object appeared since it was read. Callers re-read and retry."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"envoyfilter {namespace}/{name} already exists")


def _is_forbidden(exc: Any) -> bool:
    status = int(getattr(exc, "status", 0) or 0)
    return status in (401, 403) or "403" in str(getattr(exc, "reason", "")).split(" ", 3)[:3]


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
            if message:
                return str(message)
        except (ValueError, AttributeError):
            pass
    return str(getattr(exc, "reason", "") or exc)


def _pod(item: dict[str, Any]) -> Pod:
    meta = item.get("metadata") or {}
    status = item.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    owner = next((o.get("name") for o in meta.get("ownerReferences") or []
                  if o.get("kind") == "ReplicaSet"), None)
    containers = tuple(str(c.get("name")) for c in (item.get("spec") or {}).get("containers") or [])
    return Pod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        phase=str(status.get("phase", "")),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        replicaset=owner,
        containers=containers,
    )


def _deployment(item: dict[str, Any]) -> Deployment:
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    selector = spec.get("selector") or {}
    match_labels = dict(selector.get("matchLabels") or {})
    if selector.get("matchExpressions"):
        match_labels = {}  # not expressible as a workloadSelector; app refuses such gateways
    return Deployment(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        selector=match_labels,
        template_labels=dict(((spec.get("template") or {}).get("metadata") or {}).get("labels")
                             or {}),
        paused=bool(spec.get("paused")),
        replicas=int(spec.get("replicas", 1)),
        generation=int(meta.get("generation", 0)),
        uid=str(meta.get("uid", "")),
    )


def _rollout_state(item: dict[str, Any]) -> RolloutState:
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    return RolloutState(
        generation=int(meta.get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        spec_replicas=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        paused=bool(spec.get("paused")),
        conditions=tuple(
            Condition(str(c.get("type", "")), str(c.get("status", "")),
                      str(c.get("reason", "")), str(c.get("message", "")))
            for c in status.get("conditions") or []),
    )
