"""The one module that talks to Kubernetes: the API verbs the use cases need.

Requests go through `transport` (http.client and `websock`, with the kubeconfig's TLS,
credentials and impersonation built by `connection` and `credentials`); the kubernetes package is
not imported at all: its `__init__` alone costs ~180 ms (its kubeconfig loader pulls requests,
oauthlib and pydantic), and the plugin needs only a dozen fields. Every write names its content
type and field manager. HTTP failures become the project's errors here: 401 says the credentials
were not accepted, 403 names the RBAC verb and resource. Every path segment is escaped. Any
failure of a port-forward or exec stream becomes a ClusterError naming the pod.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kubectl_keepalive.errors import (
    AlreadyExists,
    ClusterError,
    ForbiddenError,
    KeepaliveError,
    UnavailableError,
)
from kubectl_keepalive.kube.client import connection as connections
from kubectl_keepalive.kube.client import streams
from kubectl_keepalive.kube.client.kubeconfig import ResolvedConfig, resolve
from kubectl_keepalive.kube.client.transport import HandshakeError, Transport
from kubectl_keepalive.kube.cluster import (
    FIELD_MANAGER,
    AdminRead,
    Condition,
    RolloutState,
)
from kubectl_keepalive.model import PROXY_CONFIG_ANNOTATION, REVISION_LABEL, Deployment, Pod

ENVOYFILTERS = "/apis/networking.istio.io/v1alpha3"  # the only version EnvoyFilter is served as
ENVOYFILTER_RESOURCE = "envoyfilters.networking.istio.io"
ADMIN_PORT = 15000
PROXY_CONTAINER = "istio-proxy"
REQUEST_TIMEOUT = 30.0
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def _seg(value: str) -> str:
    """One path segment: a name can never become `..` or a query."""
    return urllib.parse.quote(value, safe="")


def _ns_path(prefix: str, namespace: str | None, resource: str, name: str = "") -> str:
    base = (f"{prefix}/namespaces/{_seg(namespace)}/{resource}" if namespace
            else f"{prefix}/{resource}")
    return f"{base}/{_seg(name)}" if name else base


class KubeCluster:
    """`cluster.Cluster` on a real API server."""

    def __init__(self, resolved: ResolvedConfig | None,
                 env: Mapping[str, str] | None = None) -> None:
        if resolved is None:  # older callers: None meant "in a pod"
            import os

            resolved = resolve(None, None, None, os.environ if env is None else env)
        self.connection = connections.build(resolved,
                                             dict(env) if env is not None else None)
        self._transport = Transport(self.connection)
        self._where = (f"in-cluster API server {self.connection.server}" if resolved.in_cluster
                       else self.connection.describe())
        self._exec_only = False  # set once port-forward was refused, to stop asking
        self._lock = threading.Lock()
        self.requests = 0
        self.notices: list[str] = []

    def describe(self) -> str:
        return self._where

    # -- transport -------------------------------------------------------------------------

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _send(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str = "application/json") -> tuple[int, bytes]:
        self._count()
        data = json.dumps(body).encode() if body is not None else None
        return self._transport.request(method, path, query, data, content_type)

    def _call(self, verb: str, resource: str, namespace: str | None, method: str, path: str,
              query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = "application/json", allow: tuple[int, ...] = ()) -> Any:
        status, data = self._send(method, path, query, body, content_type)
        if status in allow:
            return None
        if status >= 400:
            raise self._error(status, data, verb, resource, namespace)
        try:
            return json.loads(data) if data else {}
        except (ValueError, RecursionError):
            raise ClusterError(f"{verb} {resource} answered {status} with a body that is not "
                               f"JSON ({self._where})") from None

    def _unauthorized(self, reason: str) -> ClusterError:
        return ClusterError(
            f"unauthorized (401): the API server at {self.connection.server} did not accept "
            f"the credentials of {self.connection.who()}: {reason or 'Unauthorized'} (check "
            "the token, client certificate or credential plugin; `kubectl auth whoami` shows "
            "who kubectl is)")

    def _error(self, status: int, data: bytes, verb: str, resource: str,
               namespace: str | None) -> KeepaliveError:
        where = f"in namespace {namespace}" if namespace else "at cluster scope"
        reason = _message(data) or http.client.responses.get(status, "")
        if status == 401:
            return self._unauthorized(reason)
        if status == 403:
            return ForbiddenError(
                f"forbidden (403): cannot {verb} {resource} {where}: RBAC must allow "
                f"verb {verb!r} on {resource!r} ({reason})"
            )
        if status == 404 and resource == ENVOYFILTER_RESOURCE and verb == "list":
            return ClusterError(
                "the EnvoyFilter API (networking.istio.io/v1alpha3) is not served by "
                f"{self._where}: Istio does not seem to be installed"
            )
        if status == 409 and verb == "create":
            return AlreadyExists(namespace or "", resource)
        if status == 429 or status >= 500:  # overloaded or restarting: asking again may work
            return UnavailableError(f"{verb} {resource} {where} failed: {status} {reason}")
        return ClusterError(f"{verb} {resource} {where} failed: {status} {reason}")

    @staticmethod
    def _write_query(dry_run: bool) -> list[tuple[str, str]]:
        query = [("fieldManager", FIELD_MANAGER)]
        return [*query, ("dryRun", "All")] if dry_run else query

    # -- pods, deployments, services, nodes -------------------------------------------------

    def list_pods(self, namespace: str | None, selector: str) -> list[Pod]:
        found = self._call("list", "pods", namespace, "GET", _ns_path("/api/v1", namespace,
                                                                      "pods"),
                           [("labelSelector", selector)])
        return [_pod(item) for item in _items(found)]

    def list_deployments(self, namespace: str | None) -> list[Deployment]:
        found = self._call("list", "deployments.apps", namespace, "GET",
                           _ns_path("/apis/apps/v1", namespace, "deployments"))
        return [_deployment(item) for item in _items(found)]

    def rollout_state(self, namespace: str, name: str) -> RolloutState:
        found = self._call("get", "deployments.apps", namespace, "GET",
                           _ns_path("/apis/apps/v1", namespace, "deployments", name))
        return _rollout_state(found)

    def restart_deployment(self, namespace: str, name: str, at: str, dry_run: bool) -> None:
        # What `kubectl rollout restart` sends: a new pod-template annotation, nothing else.
        body = {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}}
        self._call("patch", "deployments.apps", namespace, "PATCH",
                   _ns_path("/apis/apps/v1", namespace, "deployments", name),
                   self._write_query(dry_run), body, STRATEGIC_MERGE_PATCH)

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        found = self._call("list", "services", namespace, "GET",
                           _ns_path("/api/v1", namespace, "services"))
        return _items(found)

    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        found = self._call("get", "configmaps", namespace, "GET",
                           _ns_path("/api/v1", namespace, "configmaps", name), allow=(404,))
        if not isinstance(found, dict):
            return None
        data = found.get("data")
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def node_provider_ids(self) -> list[str] | None:
        try:
            found = self._call("list", "nodes", None, "GET", "/api/v1/nodes")
        except ForbiddenError:
            return None  # a namespaced user: the cloud is then read from the Service alone
        return [str((i.get("spec") or {}).get("providerID", "")) for i in _items(found)]

    # -- EnvoyFilters --------------------------------------------------------------------

    def _filters_path(self, namespace: str | None, name: str = "") -> str:
        return _ns_path(ENVOYFILTERS, namespace, "envoyfilters", name)

    def list_envoyfilters(self, namespace: str | None) -> list[dict[str, Any]]:
        found = self._call("list", ENVOYFILTER_RESOURCE, namespace, "GET",
                           self._filters_path(namespace))
        return _items(found)

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
        return self.read_admin_all(pod, [path], timeout)[0]

    def read_admin_all(self, pod: Pod, paths: list[str], timeout: float) -> list[AdminRead]:
        """GET several admin paths through one port-forward (keep-alive), or one exec each
        where port-forward is refused. The first path's failure raises as read_admin's does;
        a later path's is its AdminRead.error."""
        if not self._exec_only:
            try:
                return self._admin_via_port_forward(pod, paths, timeout)
            except ForbiddenError:
                with self._lock:
                    if not self._exec_only:
                        self._exec_only = True
                        self.notices.append(
                            "port-forward to pods is forbidden (RBAC: get/create "
                            "pods/portforward); reading Envoy admin through "
                            f"`kubectl exec -c {PROXY_CONTAINER} -- pilot-agent request` instead"
                        )
        first = AdminRead(self._admin_via_exec(pod, paths[0], timeout), "exec")
        return [first, *(self._extra_via_exec(pod, path, timeout) for path in paths[1:])]

    def _extra_via_exec(self, pod: Pod, path: str, timeout: float) -> AdminRead:
        try:
            return AdminRead(self._admin_via_exec(pod, path, timeout), "exec")
        except KeepaliveError as exc:
            return AdminRead(b"", "exec", str(exc))

    def _pod_path(self, pod: Pod, sub: str) -> str:
        return _ns_path("/api/v1", pod.namespace, "pods", pod.name) + f"/{sub}"

    def _open_stream(self, pod: Pod, sub: str, query: list[tuple[str, str]], timeout: float,
                     what: str, forbidden: str) -> Any:
        """The websocket of a pod subresource; every failure named after the pod."""
        self._count()
        try:
            return self._transport.websocket(self._pod_path(pod, sub), query,
                                             [streams.CHANNEL_PROTOCOL], timeout)
        except HandshakeError as exc:
            if exc.status == 401:
                raise self._unauthorized(_message(exc.body)) from None
            if exc.status == 403:
                raise ForbiddenError(forbidden) from None
            raise ClusterError(f"{what} {pod.namespace}/{pod.name} failed: {exc.status} "
                               f"{_message(exc.body) or http.client.responses.get(exc.status, '')}"
                               ) from None
        except KeepaliveError:
            raise
        except Exception as exc:  # any transport failure is this pod's read error
            raise ClusterError(f"{what} {pod.namespace}/{pod.name} failed: "
                               f"{_describe(exc)}") from None

    def _admin_via_port_forward(self, pod: Pod, paths: list[str],
                                timeout: float) -> list[AdminRead]:
        what = f"port-forward to {pod.namespace}/{pod.name}:{ADMIN_PORT}"
        ws = self._open_stream(
            pod, "portforward", [("ports", str(ADMIN_PORT))], timeout, "port-forward to",
            f"forbidden (403): cannot create pods/portforward in namespace {pod.namespace}")
        try:
            answers, cut = streams.http_get_all(ws, paths, timeout)
        except Exception as exc:  # BrokenPipe, reset, bad frames, timeouts: all the pod's
            raise ClusterError(
                f"reading Envoy admin of {pod.namespace}/{pod.name} through port-forward "
                f"failed: {_describe(exc)}") from None
        finally:
            _close(ws)
        reads = []
        for index, path in enumerate(paths):
            answer = answers[index] if index < len(answers) else None
            error = (f"reading Envoy admin of {pod.namespace}/{pod.name} through port-forward "
                     f"failed before GET /{path}: {cut}" if answer is None else
                     f"Envoy admin of {pod.namespace}/{pod.name} answered {answer.status} to "
                     f"GET /{path} ({what})" if answer.status != 200 else None)
            if error and index == 0:
                raise ClusterError(error)
            reads.append(AdminRead(answer.body if answer else b"", "port-forward", error))
        return reads

    def _admin_via_exec(self, pod: Pod, path: str, timeout: float) -> bytes:
        return self.exec_proxy(pod, ["pilot-agent", "request", "GET", path], timeout)

    def exec_proxy(self, pod: Pod, command: list[str], timeout: float) -> bytes:
        """Run `command` in the pod's istio-proxy container; its stdout, or a ClusterError."""
        query = [("command", part) for part in command]
        query += [("container", PROXY_CONTAINER), ("stdout", "true"), ("stderr", "true"),
                  ("stdin", "false"), ("tty", "false")]
        ws = self._open_stream(
            pod, "exec", query, timeout, "exec in",
            f"forbidden (403): cannot create pods/exec in namespace {pod.namespace} "
            f"(needed for `{' '.join(command[:2])}` in {PROXY_CONTAINER})")
        try:
            result = streams.exec_output(ws, timeout)
        except Exception as exc:  # any stream failure is this pod's error, never a crash
            raise ClusterError(f"exec of {command[0]} in {pod.namespace}/{pod.name} failed: "
                               f"{_describe(exc)}") from None
        finally:
            _close(ws)
        if result.exit_code != 0:
            text = result.failure or result.stderr.decode(errors="replace")
            raise ClusterError(
                f"`{' '.join(command)}` in {pod.namespace}/{pod.name} exited "
                f"{result.exit_code}: {text.strip()[:200]}")
        return result.stdout


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, streams.StreamError):
        return text or "stream error"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close(ws: Any) -> None:
    # Closing a broken stream must not hide the error that broke it.
    with contextlib.suppress(Exception):
        ws.close(timeout=1)


def _items(found: Any) -> list[dict[str, Any]]:
    items = found.get("items") if isinstance(found, dict) else None
    return [i for i in items or () if isinstance(i, dict)]


def _message(data: bytes) -> str:
    try:
        message = json.loads(data).get("message")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return str(message or "")


def _pod(item: dict[str, Any]) -> Pod:
    meta = item.get("metadata") or {}
    status = item.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    owner = next((o.get("name") for o in meta.get("ownerReferences") or []
                  if o.get("kind") == "ReplicaSet"), None)
    spec = item.get("spec") or {}
    specs = spec.get("containers") or []
    annotations = meta.get("annotations") or {}
    proxy_config = annotations.get(PROXY_CONFIG_ANNOTATION)
    containers = tuple(str(c.get("name")) for c in specs)
    proxy_args = next((tuple(str(a) for a in c.get("args") or []) for c in specs
                       if c.get("name") == "istio-proxy"), ())
    return Pod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        phase=str(status.get("phase", "")),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        replicaset=owner,
        containers=containers,
        injected_revision=_injected_revision(annotations),
        proxy_args=proxy_args,
        proxy_config=proxy_config if isinstance(proxy_config, str) else None,
        grace_period=spec.get("terminationGracePeriodSeconds"),
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
        rollout=_rollout_state(item),
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
