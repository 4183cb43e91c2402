"""The interface the use cases need from a Kubernetes cluster, and the records it returns.

`kube.api.KubeCluster` implements it against a real API server; tests may implement it too.
Keeping the interface here lets the use cases stay free of the adapter and its client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kubectl_keepalive.model import Condition as Condition  # re-exported: callers import here
from kubectl_keepalive.model import Deployment, Pod
from kubectl_keepalive.model import RolloutState as RolloutState

FIELD_MANAGER = "kubectl-keepalive"


@dataclass(frozen=True)
class AdminRead:
    """The body of one Envoy admin GET and how it was reached ("port-forward" or "exec")."""

    body: bytes
    via: str
    # Set (and body empty) when this read failed though an earlier one on the pod succeeded.
    error: str | None = None


class Cluster(Protocol):
    """What the use cases ask of a cluster. Errors are the project's own (errors.py)."""

    def list_pods(self, namespace: str | None, selector: str) -> list[Pod]: ...

    def list_deployments(self, namespace: str | None) -> list[Deployment]: ...

    def rollout_state(self, namespace: str, name: str) -> RolloutState: ...

    def restart_deployment(self, namespace: str, name: str, at: str, dry_run: bool) -> None: ...

    def list_envoyfilters(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def get_envoyfilter(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_envoyfilter(
        self, namespace: str, body: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]: ...

    def patch_envoyfilter(
        self, namespace: str, name: str, operations: list[dict[str, Any]], dry_run: bool
    ) -> dict[str, Any]: ...

    def delete_envoyfilter(
        self, namespace: str, name: str, resource_version: str, dry_run: bool
    ) -> None: ...

    def read_admin(self, pod: Pod, path: str, timeout: float) -> AdminRead: ...

    def read_admin_all(self, pod: Pod, paths: list[str], timeout: float) -> list[AdminRead]:
        """Several admin paths in one go; a failure of the first raises, of a later one is
        its AdminRead.error."""
        ...

    def exec_proxy(self, pod: Pod, command: list[str], timeout: float) -> bytes:
        """stdout of `command` run in the pod's istio-proxy container."""
        ...

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data, or None when there is none; ForbiddenError when RBAC refuses."""
        ...

    def node_provider_ids(self) -> list[str] | None:
        """Nodes' spec.providerID, or None when listing nodes is forbidden."""
        ...

    def describe(self) -> str:
        """The server URL and context, for messages."""
        ...
