"""The one module that talks to Kubernetes (and the only one importing `kubernetes`).

It uses the client for what is hard to get right (kubeconfig loading with exec plugins and
token refresh, TLS set-up, the port-forward and exec websocket protocols) but sends REST
requests itself over the client's own connection pool: the generated API classes cost more
than a second to import, and the plugin needs only a dozen fields. Every write names its
content type and field manager. HTTP failures become the project's errors here, with the RBAC
verb and resource named.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from typing import Any

from kubectl_keepalive.cluster import (
    FIELD_MANAGER,
    REVISION_LABEL,
    AdminRead,
    Condition,
    RolloutState,
)
from kubectl_keepalive.errors import ClusterError, ForbiddenError, KeepaliveError
from kubectl_keepalive.kubeconfig import ResolvedConfig
from kubectl_keepalive.model import Deployment, Pod

ENVOYFILTERS = "/apis/networking.istio.io/v1alpha3"  # the only version EnvoyFilter is served as
ENVOYFILTER_RESOURCE = "envoyfilters.networking.istio.io"
ADMIN_PORT = 15000
PROXY_CONTAINER = "istio-proxy"
REQUEST_TIMEOUT = 30.0
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeCluster:
    """`cluster.Cluster` on a real API server."""

    def __init__(self, resolved: ResolvedConfig | None) -> None:
        from kubernetes.client import Configuration
        from kubernetes.client.rest import RESTClientObject
        from kubernetes.config import ConfigException, kube_config, load_incluster_config

        configuration = Configuration()
        try:
            if resolved is None:
                load_incluster_config(client_configuration=configuration)
                self._where = f"in-cluster API server {configuration.host}"
            else:
                kube_config.load_kube_config_from_dict(
                    resolved.config,
                    context=resolved.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                self._where = f"{configuration.host} (context {resolved.context})"
        except ConfigException as exc:
            raise ClusterError(f"cannot use the kubeconfig: {exc}") from None
        # One retry at most: an unreachable server should be reported, not waited on.
        configuration.retries = 1
        configuration.connection_pool_maxsize = 32  # pods are read in parallel
        self._configuration = configuration
        self._rest = RESTClientObject(configuration)
        self._exec_only = False  # set once port-forward was refused, to stop asking
        self._lock = threading.Lock()
        self.requests = 0
        self.notices: list[str] = []

    def describe(self) -> str:
        return self._where

    # -- transport -------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        """The bearer token, when the kubeconfig has one (refreshed by exec plugins)."""
        headers = {}
        settings: dict[str, Any] = dict(self._configuration.auth_settings())
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"]).lower()] = str(setting["value"])
        return headers

    def _url(self, path: str, query: list[tuple[str, str]] | None = None) -> str:
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"{self._configuration.host}{path}{suffix}"

    def _send(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str = "application/json") -> tuple[int, bytes]:
        import urllib3

        with self._lock:
            self.requests += 1
        headers = {"Accept": "application/json", "User-Agent": "kubectl-keepalive",
                   **self._auth_headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            response = self._rest.pool_manager.request(
                method, self._url(path, query), body=data, headers=headers,
                timeout=urllib3.Timeout(total=REQUEST_TIMEOUT), retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ClusterError(f"cannot reach the API server at {self._where}: {exc}") from None
        return int(response.status), bytes(response.data)

    def _call(self, verb: str, resource: str, namespace: str | None, method: str, path: str,
              query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = "application/json", allow: tuple[int, ...] = ()) -> Any:
        status, data = self._send(method, path, query, body, content_type)
        if status in allow:
            return None
        if status >= 400:
            raise self._error(status, data, verb, resource, namespace)
        return json.loads(data) if data else {}

    def _error(self, status: int, data: bytes, verb: str, resource: str,
               namespace: str | None) -> KeepaliveError:
        where = f"in namespace {namespace}" if namespace else "at cluster scope"
        reason = _message(data) or http.client.responses.get(status, "")
        if status in (401, 403):
            who = "unauthorized (401)" if status == 401 else "forbidden (403)"
            return ForbiddenError(
                f"{who}: cannot {verb} {resource} {where}: RBAC must allow "
                f"verb {verb!r} on {resource!r} ({reason})"
            )
        if status == 404 and resource == ENVOYFILTER_RESOURCE and verb == "list":
            return ClusterError(
                "the EnvoyFilter API (networking.istio.io/v1alpha3) is not served by "
                f"{self._where}: Istio does not seem to be installed"
            )
        if status == 409 and verb == "create":
            return AlreadyExists(namespace or "", resource)
        return ClusterError(f"{verb} {resource} {where} failed: {status} {reason}")

    @staticmethod
    def _write_query(dry_run: bool) -> list[tuple[str, str]]:
        query = [("fieldManager", FIELD_MANAGER)]
        return [*query, ("dryRun", "All")] if dry_run else query

    # -- pods, deployments, services, nodes -------------------------------------------------

    def list_pods(self, namespace: str | None, selector: str) -> list[Pod]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        found = self._call("list", "pods", namespace, "GET", path, [("labelSelector", selector)])
        return [_pod(item) for item in found.get("items", [])]

    def list_deployments(self, namespace: str | None) -> list[Deployment]:
        path = (f"/apis/apps/v1/namespaces/{namespace}/deployments" if namespace
                else "/apis/apps/v1/deployments")
        found = self._call("list", "deployments.apps", namespace, "GET", path)
        return [_deployment(item) for item in found.get("items", [])]

    def rollout_state(self, namespace: str, name: str) -> RolloutState:
        found = self._call("get", "deployments.apps", namespace, "GET",
                           f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        return _rollout_state(found)

    def restart_deployment(self, namespace: str, name: str, at: str, dry_run: bool) -> None:
        # What `kubectl rollout restart` sends: a new pod-template annotation, nothing else.
        body = {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}}
        self._call("patch", "deployments.apps", namespace, "PATCH",
                   f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                   self._write_query(dry_run), body, STRATEGIC_MERGE_PATCH)

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{namespace}/services" if namespace else "/api/v1/services"
        found = self._call("list", "services", namespace, "GET", path)
        return [i for i in found.get("items", []) if isinstance(i, dict)]

    def node_provider_ids(self) -> list[str] | None:
        try:
            found = self._call("list", "nodes", None, "GET", "/api/v1/nodes")
        except ForbiddenError:
            return None  # a namespaced user: the cloud is then read from the Service alone
        return [str((i.get("spec") or {}).get("providerID", "")) for i in found.get("items", [])]

    # -- EnvoyFilters --------------------------------------------------------------------

    def _filters_path(self, namespace: str | None, name: str = "") -> str:
        base = (f"{ENVOYFILTERS}/namespaces/{namespace}/envoyfilters" if namespace
                else f"{ENVOYFILTERS}/envoyfilters")
        return f"{base}/{name}" if name else base

    def list_envoyfilters(self, namespace: str | None) -> list[dict[str, Any]]:
        found = self._call("list", ENVOYFILTER_RESOURCE, namespace, "GET",
                           self._filters_path(namespace))
        return [item for item in found.get("items", []) if isinstance(item, dict)]

    def get_envoyfilter(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call(
            "get", ENVOYFILTER_RESOURCE, namespace, "GET", self._filters_path(namespace, name),
            allow=(404,))
        return found

    def create_envoyfilter(self, namespace: str, body: dict[str, Any],
                           dry_run: bool) -> dict[str, Any]:
        status, data = self._send("POST", self._filters_path(namespace),
                                  self._write_query(dry_run), body)
        if status == 409:
            raise AlreadyExists(namespace, body["metadata"]["name"])
        if status >= 400:
            raise self._error(status, data, "create", ENVOYFILTER_RESOURCE, namespace)
        created: dict[str, Any] = json.loads(data)
        return created

    def patch_envoyfilter(self, namespace: str, name: str, operations: list[dict[str, Any]],
                          dry_run: bool) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            "patch", ENVOYFILTER_RESOURCE, namespace, "PATCH",
            self._filters_path(namespace, name), self._write_query(dry_run), operations,
            JSON_PATCH)
        return patched

    def delete_envoyfilter(self, namespace: str, name: str, resource_version: str,
                           dry_run: bool) -> None:
        # The precondition makes a concurrent edit fail the delete instead of being lost.
        body = {"apiVersion": "v1", "kind": "DeleteOptions",
                "preconditions": {"resourceVersion": resource_version}}
        query = [("dryRun", "All")] if dry_run else []
        self._call("delete", ENVOYFILTER_RESOURCE, namespace, "DELETE",
                   self._filters_path(namespace, name), query, body)

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

    def _pod_url(self, pod: Pod, sub: str) -> str:
        return self._url(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/{sub}")

    def _admin_via_port_forward(self, pod: Pod, path: str, timeout: float) -> bytes:
        from kubernetes.stream import ws_client

        with self._lock:
            self.requests += 1
        try:
            forward = ws_client.portforward_call(
                self._configuration, "GET", self._pod_url(pod, "portforward"),
                headers=self._auth_headers(), query_params=[("ports", str(ADMIN_PORT))],
                _request_timeout=timeout)
        except Exception as exc:  # the client wraps every websocket failure the same way
            if _is_forbidden(exc):
                raise ForbiddenError(
                    f"forbidden (403): cannot create pods/portforward in namespace "
                    f"{pod.namespace}") from None
            raise ClusterError(
                f"port-forward to {pod.namespace}/{pod.name}:{ADMIN_PORT} failed: "
                f"{getattr(exc, 'reason', exc)}") from None
        try:
            sock = forward.socket(ADMIN_PORT)
            sock.settimeout(timeout)
            request = (f"GET /{path.lstrip('/')} HTTP/1.1\r\nHost: localhost\r\n"
                       "Connection: close\r\n\r\n")
            sock.sendall(request.encode())
            # Read by Content-Length or chunks: the forwarded stream may never show EOF.
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
        return self.exec_proxy(pod, ["pilot-agent", "request", "GET", path], timeout)

    def exec_proxy(self, pod: Pod, command: list[str], timeout: float) -> bytes:
        """Run `command` in the pod's istio-proxy container; its stdout, or a ClusterError."""
        from kubernetes.stream import ws_client

        with self._lock:
            self.requests += 1
        query = [("command", part) for part in command]
        query += [("container", PROXY_CONTAINER), ("stdout", "true"), ("stderr", "true"),
                  ("stdin", "false"), ("tty", "false")]
        try:
            ws = ws_client.websocket_call(
                self._configuration, "GET", self._pod_url(pod, "exec"),
                headers=self._auth_headers(), query_params=query, _preload_content=False,
                binary=True)
        except Exception as exc:  # the client wraps every websocket failure the same way
            if _is_forbidden(exc):
                raise ForbiddenError(
                    f"forbidden (403): cannot create pods/exec in namespace {pod.namespace} "
                    f"(needed for `{' '.join(command[:2])}` in {PROXY_CONTAINER})") from None
            raise ClusterError(f"exec in {pod.namespace}/{pod.name} failed: "
                               f"{getattr(exc, 'reason', exc)}") from None
        try:
            ws.run_forever(timeout=timeout)
            if ws.is_open():
                raise ClusterError(
                    f"exec of {command[0]} in {pod.namespace}/{pod.name} did not finish "
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
                f"`{' '.join(command)}` in {pod.namespace}/{pod.name} exited "
                f"{code}: {text.strip()[:200]}")
        return out_bytes


class AlreadyExists(KeepaliveError):
    """Create lost a race: the object appeared since it was read. Callers re-read and retry."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"envoyfilter {namespace}/{name} already exists")


def _is_forbidden(exc: Any) -> bool:
    """The websocket handshake's status: the client reports it as `Handshake status 403 ...`."""
    status = int(getattr(exc, "status", 0) or 0)
    words = str(getattr(exc, "reason", exc)).split()
    return status in (401, 403) or "403" in words[:4] or "401" in words[:4]


def _message(data: bytes) -> str:
    try:
        message = json.loads(data).get("message")
    except (ValueError, AttributeError):
        return ""
    return str(message or "")


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
        injected_revision=_injected_revision(meta.get("annotations") or {}),
    )


def _injected_revision(annotations: dict[str, Any]) -> str | None:
    """The injector writes its revision as the `istio.io/rev` annotation; older injectors only
    into the `sidecar.istio.io/status` JSON."""
    revision = annotations.get(REVISION_LABEL)
    if not revision:
        try:
            revision = json.loads(annotations.get("sidecar.istio.io/status") or "{}").get(
                "revision")
        except (ValueError, AttributeError):
            revision = None
    return str(revision) if revision else None


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
