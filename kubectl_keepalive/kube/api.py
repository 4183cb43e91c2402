"""The one module that talks to Kubernetes: the API verbs the use cases need.

Requests go through `transport` (http.client and `websock`, with the kubeconfig's TLS,
credentials and impersonation built by `connection` and `credentials`); the kubernetes package is
not imported at all: its `__init__` alone costs ~180 ms (its kubeconfig loader pulls requests,
oauthlib and pydantic), and the plugin needs only a dozen fields. Every write names its content
type and field manager. HTTP failures become the project's errors here: 401 says the credentials
were not accepted, 403 names the RBAC verb and resource. Every path segment is escaped. Any
failure of a port-forward or exec stream becomes a ClusterError naming the pod. Every field read
from an API object is checked for its shape (`_Fields`): a wrong one is a ClusterError naming
the object and the field. Text from the server (Status messages, stream errors, stderr) is
quoted cut and escaped (`terminal.safe`). Answers are bounded: API answers by the transport
(64 MiB), Envoy admin answers and exec output by `max_admin_answer` (256 MiB); `max_answer`
sets both.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
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
from kubectl_keepalive.kube.client import streams, websock
from kubectl_keepalive.kube.client.httppool import AnswerTooLarge, size_text
from kubectl_keepalive.kube.client.kubeconfig import ResolvedConfig, resolve
from kubectl_keepalive.kube.client.transport import HandshakeError, Transport
from kubectl_keepalive.kube.cluster import (
    FIELD_MANAGER,
    AdminRead,
    Condition,
    RolloutState,
)
from kubectl_keepalive.model import PROXY_CONFIG_ANNOTATION, REVISION_LABEL, Deployment, Pod
from kubectl_keepalive.terminal import safe

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
                 env: Mapping[str, str] | None = None, max_answer: int | None = None) -> None:
        if resolved is None:  # older callers: None meant "in a pod"
            import os

            resolved = resolve(None, None, None, os.environ if env is None else env)
        self.connection = connections.build(resolved,
                                             dict(env) if env is not None else None)
        self._transport = Transport(self.connection, max_answer=max_answer)
        self.max_admin_answer = streams.MAX_ANSWER if max_answer is None else max_answer
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
        return self._json(data, status, verb, resource)

    def _json(self, data: bytes, status: int, verb: str, resource: str) -> Any:
        try:
            return json.loads(data) if data else {}
        except (ValueError, RecursionError):
            raise ClusterError(f"{verb} {resource} answered {status} with a body that is not "
                               f"JSON ({self._where})") from None

    def _object(self, found: Any, verb: str, resource: str) -> dict[str, Any]:
        if not isinstance(found, dict):
            raise ClusterError(f"{verb} {resource} answered with JSON that is not an object "
                               f"({self._where})")
        return found

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
        return [_Fields("node", i).text("spec.providerID") for i in _items(found)]

    # -- EnvoyFilters --------------------------------------------------------------------

    def _filters_path(self, namespace: str | None, name: str = "") -> str:
        return _ns_path(ENVOYFILTERS, namespace, "envoyfilters", name)

    def list_envoyfilters(self, namespace: str | None) -> list[dict[str, Any]]:
        found = self._call("list", ENVOYFILTER_RESOURCE, namespace, "GET",
                           self._filters_path(namespace))
        return _items(found)

    def get_envoyfilter(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._call("get", ENVOYFILTER_RESOURCE, namespace, "GET",
                           self._filters_path(namespace, name), allow=(404,))
        return None if found is None else self._object(found, "get", ENVOYFILTER_RESOURCE)

    def create_envoyfilter(self, namespace: str, body: dict[str, Any],
                           dry_run: bool) -> dict[str, Any]:
        status, data = self._send("POST", self._filters_path(namespace),
                                  self._write_query(dry_run), body)
        if status == 409:
            raise AlreadyExists(namespace, body["metadata"]["name"])
        if status >= 400:
            raise self._error(status, data, "create", ENVOYFILTER_RESOURCE, namespace)
        return self._object(self._json(data, status, "create", ENVOYFILTER_RESOURCE), "create",
                            ENVOYFILTER_RESOURCE)

    def patch_envoyfilter(self, namespace: str, name: str, operations: list[dict[str, Any]],
                          dry_run: bool) -> dict[str, Any]:
        patched = self._call(
            "patch", ENVOYFILTER_RESOURCE, namespace, "PATCH",
            self._filters_path(namespace, name), self._write_query(dry_run), operations,
            JSON_PATCH)
        return self._object(patched, "patch", ENVOYFILTER_RESOURCE)

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
            if 300 <= exc.status < 400:
                raise ClusterError(
                    f"{what} {pod.namespace}/{pod.name} failed: the API server answered with a "
                    f"redirect ({exc.status}) to {safe(exc.location) or '(no Location)'}: "
                    "redirects are not followed") from None
            raise ClusterError(f"{what} {pod.namespace}/{pod.name} failed: {exc.status} "
                               f"{_message(exc.body) or http.client.responses.get(exc.status, '')}"
                               ) from None
        except KeepaliveError:
            raise
        except Exception as exc:  # any transport failure is this pod's read error
            raise ClusterError(f"{what} {pod.namespace}/{pod.name} failed: "
                               f"{_describe(exc)}") from None

    def _too_large(self, pod: Pod, what: str) -> ClusterError:
        return ClusterError(
            f"{what} of {pod.namespace}/{pod.name} is larger than "
            f"{size_text(self.max_admin_answer)} (--max-answer-size raises the bound)")

    def _admin_via_port_forward(self, pod: Pod, paths: list[str],
                                timeout: float) -> list[AdminRead]:
        what = f"port-forward to {pod.namespace}/{pod.name}:{ADMIN_PORT}"
        deadline = time.monotonic() + timeout  # the upgrade and every read within it
        ws = self._open_stream(
            pod, "portforward", [("ports", str(ADMIN_PORT))], timeout, "port-forward to",
            f"forbidden (403): cannot create pods/portforward in namespace {pod.namespace}")
        try:
            answers, cut = streams.http_get_all(ws, paths, max(0.0, deadline - time.monotonic()),
                                                self.max_admin_answer)
        except (AnswerTooLarge, websock.MessageTooLarge):
            raise self._too_large(pod, "an Envoy admin answer") from None
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
        deadline = time.monotonic() + timeout  # the upgrade and the output within it
        ws = self._open_stream(
            pod, "exec", query, timeout, "exec in",
            f"forbidden (403): cannot create pods/exec in namespace {pod.namespace} "
            f"(needed for `{' '.join(command[:2])}` in {PROXY_CONTAINER})")
        try:
            result = streams.exec_output(ws, max(0.0, deadline - time.monotonic()),
                                         self.max_admin_answer)
        except (AnswerTooLarge, websock.MessageTooLarge):
            raise self._too_large(pod, f"the output of `{' '.join(command[:2])}`") from None
        except Exception as exc:  # any stream failure is this pod's error, never a crash
            raise ClusterError(f"exec of {command[0]} in {pod.namespace}/{pod.name} failed: "
                               f"{_describe(exc)}") from None
        finally:
            _close(ws)
        if result.exit_code != 0:
            text = result.failure or result.stderr.decode(errors="replace")
            raise ClusterError(
                f"`{' '.join(command)}` in {pod.namespace}/{pod.name} exited "
                f"{result.exit_code}: {safe(text.strip(), 200)}")
        return result.stdout


def _describe(exc: BaseException) -> str:
    text = safe(str(exc).strip())
    if isinstance(exc, streams.StreamError):
        return text or "stream error"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close(ws: Any) -> None:
    # Closing a broken stream must not hide the error that broke it.
    with contextlib.suppress(Exception):
        ws.close(timeout=1)


def _items(found: Any) -> list[dict[str, Any]]:
    """A list answer's items, each an object; any other shape is the server's error."""
    items = found.get("items") if isinstance(found, dict) else found
    if items is None:
        return []
    if not isinstance(items, list):
        raise ClusterError(f"the API server answered a list with items of the wrong shape: "
                           f"{safe(repr(items), 80)}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ClusterError(f"the API server answered a list whose items[{index}] is "
                               f"{safe(repr(item), 80)}, not an object")
    return items


def _message(data: bytes) -> str:
    """The `message` of an API Status body, cut and escaped for the terminal."""
    try:
        message = json.loads(data[:_MAX_STATUS]).get("message")
    except (ValueError, AttributeError, RecursionError, TypeError):
        return ""
    return safe(str(message or ""))


_MAX_STATUS = 1024 * 1024  # an error Status is small; a longer body's message is not needed


class _Fields:
    """One API object's fields, each checked for its type as it is read: a field of the wrong
    shape is a ClusterError naming the object and the field (never a crash, exit 5); a field
    missing or null takes its default, as the API server's defaults would."""

    def __init__(self, kind: str, item: dict[str, Any]) -> None:
        self._item = item
        meta = item.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name, namespace = meta.get("name"), meta.get("namespace")
        shown = "/".join(safe(str(v), 80) for v in (namespace, name) if isinstance(v, str))
        self._what = f"{kind} {shown}" if shown else f"a {kind}"

    def _wrong(self, path: str, value: Any, wanted: str) -> ClusterError:
        return ClusterError(f"the API server sent {self._what} whose {path} is "
                            f"{safe(repr(value), 80)}, not {wanted}")

    def raw(self, path: str) -> Any:
        value: Any = self._item
        done: list[str] = []
        for key in path.split("."):
            if value is None:
                return None
            if not isinstance(value, dict):
                raise self._wrong(".".join(done), value, "an object")
            value = value.get(key)
            done.append(key)
        return value

    def mapping(self, path: str) -> dict[str, Any]:
        value = self.raw(path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._wrong(path, value, "an object")
        return value

    def text_map(self, path: str) -> dict[str, str]:
        found = self.mapping(path)
        for key, value in found.items():
            if not isinstance(value, str):
                raise self._wrong(f"{path}[{safe(str(key), 80)}]", value, "a string")
        return dict(found)

    def text(self, path: str, default: str = "") -> str:
        value = self.raw(path)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._wrong(path, value, "a string")
        return value

    def integer(self, path: str, default: int) -> int:
        value = self.raw(path)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(path, value, "a whole number")
        return value

    def flag(self, path: str) -> bool:
        value = self.raw(path)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._wrong(path, value, "true or false")
        return value

    def maps(self, path: str) -> list[dict[str, Any]]:
        value = self.raw(path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(path, value, "a list")
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise self._wrong(f"{path}[{index}]", entry, "an object")
        return value

    def entry_text(self, path: str, entry: dict[str, Any], key: str) -> str:
        """A string field of one entry of a list that `maps` returned."""
        value = entry.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._wrong(f"{path}[].{key}", value, "a string")
        return value

    def entry_texts(self, path: str, entry: dict[str, Any], key: str) -> tuple[str, ...]:
        value = entry.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(f"{path}[].{key}", value, "a list of strings")
        return tuple(value)


def _pod(item: dict[str, Any]) -> Pod:
    f = _Fields("pod", item)
    conditions = f.maps("status.conditions")
    ready = any(f.entry_text("status.conditions", c, "type") == "Ready"
                and f.entry_text("status.conditions", c, "status") == "True"
                for c in conditions)
    owners = f.maps("metadata.ownerReferences")
    owner = next((f.entry_text("metadata.ownerReferences", o, "name") for o in owners
                  if f.entry_text("metadata.ownerReferences", o, "kind") == "ReplicaSet"), None)
    specs = f.maps("spec.containers")
    annotations = f.mapping("metadata.annotations")
    proxy_config = annotations.get(PROXY_CONFIG_ANNOTATION)
    containers = tuple(f.entry_text("spec.containers", c, "name") for c in specs)
    proxy_args = next((f.entry_texts("spec.containers", c, "args") for c in specs
                       if c.get("name") == PROXY_CONTAINER), ())
    return Pod(
        namespace=f.text("metadata.namespace"),
        name=f.text("metadata.name"),
        labels=f.text_map("metadata.labels"),
        phase=f.text("status.phase"),
        ready=ready,
        terminating=bool(f.raw("metadata.deletionTimestamp")),
        replicaset=owner or None,
        containers=containers,
        injected_revision=_injected_revision(annotations),
        proxy_args=proxy_args,
        proxy_config=proxy_config if isinstance(proxy_config, str) else None,
        grace_period=f.raw("spec.terminationGracePeriodSeconds"),
    )


def _injected_revision(annotations: dict[str, Any]) -> str | None:
    """The injector writes its revision as the `istio.io/rev` annotation; older injectors only
    into the `sidecar.istio.io/status` JSON."""
    revision = annotations.get(REVISION_LABEL)
    if not revision:
        try:
            revision = json.loads(annotations.get("sidecar.istio.io/status") or "{}").get(
                "revision")
        except (ValueError, AttributeError, TypeError, RecursionError):
            revision = None
    return str(revision) if isinstance(revision, (str, int)) and revision else None


def _deployment(item: dict[str, Any]) -> Deployment:
    f = _Fields("deployment", item)
    match_labels = f.text_map("spec.selector.matchLabels")
    if f.raw("spec.selector.matchExpressions"):
        match_labels = {}  # not expressible as a workloadSelector; app refuses such gateways
    return Deployment(
        namespace=f.text("metadata.namespace"),
        name=f.text("metadata.name"),
        selector=match_labels,
        template_labels=f.text_map("spec.template.metadata.labels"),
        paused=f.flag("spec.paused"),
        replicas=f.integer("spec.replicas", 1),
        generation=f.integer("metadata.generation", 0),
        uid=f.text("metadata.uid"),
        rollout=_rollout_state(item),
    )


def _rollout_state(item: Any) -> RolloutState:
    if not isinstance(item, dict):
        raise ClusterError("the API server sent a deployment that is not a JSON object")
    f = _Fields("deployment", item)
    path = "status.conditions"
    return RolloutState(
        generation=f.integer("metadata.generation", 0),
        observed_generation=f.integer("status.observedGeneration", 0),
        spec_replicas=f.integer("spec.replicas", 1),
        replicas=f.integer("status.replicas", 0),
        updated_replicas=f.integer("status.updatedReplicas", 0),
        available_replicas=f.integer("status.availableReplicas", 0),
        paused=f.flag("spec.paused"),
        conditions=tuple(
            Condition(f.entry_text(path, c, "type"), f.entry_text(path, c, "status"),
                      f.entry_text(path, c, "reason"), safe(f.entry_text(path, c, "message")))
            for c in f.maps(path)),
    )
