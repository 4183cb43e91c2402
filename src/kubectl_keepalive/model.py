"""Plain frozen records that the rest of the plugin passes around.

Parsed from external formats at the edges (envoy_dump, kube); nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeepaliveSettings:
    """What `enable` asks for: seconds before the first probe, between probes, probe count."""

    idle: int
    interval: int
    probes: int


@dataclass(frozen=True)
class SocketOption:
    """One Envoy `SocketOption` with an integer value (the only kind the plugin reads)."""

    level: int
    name: int
    int_value: int | None
    state: str = "STATE_PREBIND"


@dataclass(frozen=True)
class Keepalive:
    """Keepalive as a listener's socket options would set it on accepted sockets.

    Numbers are None when the option is absent (the kernel default applies, or keepalive is off).
    `duplicated` is True when one of the options appears more than once (several MERGE filters).
    """

    enabled: bool
    idle: int | None = None
    interval: int | None = None
    probes: int | None = None
    duplicated: bool = False

    def matches(self, wanted: KeepaliveSettings) -> bool:
        return (
            self.enabled
            and (self.idle, self.interval, self.probes)
            == (wanted.idle, wanted.interval, wanted.probes)
        )


class ListenerState(str, enum.Enum):
    """Where a listener version sits in Envoy's listener manager."""

    ACTIVE = "active"  # serving traffic: what the sockets really have
    WARMING = "warming"  # accepted, waiting for its dependencies: pending
    DRAINING = "draining"  # being replaced; still holds old connections
    REJECTED = "rejected"  # the last update failed (error_state); the active version stays


@dataclass(frozen=True)
class Listener:
    name: str
    port: int | None
    protocol: str  # "TCP" or "UDP"
    state: ListenerState
    static: bool = False
    options: tuple[SocketOption, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    phase: str = "Running"
    ready: bool = True
    terminating: bool = False
    replicaset: str | None = None
    containers: tuple[str, ...] = ()
    # The revision whose injector (and so whose istiod) serves the pod, as the injector records
    # it in the pod's annotations. The `istio.io/rev` label may name a revision tag instead.
    injected_revision: str | None = None


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    selector: dict[str, str] = field(default_factory=dict, hash=False)
    template_labels: dict[str, str] = field(default_factory=dict, hash=False)
    paused: bool = False
    replicas: int = 1
    generation: int = 0
    uid: str = ""


@dataclass(frozen=True)
class Gateway:
    """An ingress gateway: its Deployment (when found), the selector its pods share, its pods."""

    namespace: str
    name: str
    selector: dict[str, str] = field(default_factory=dict, hash=False)
    revision: str | None = None
    pods: tuple[Pod, ...] = ()
    deployment: Deployment | None = None
    # The proxy's job, decided by discovery from what its installer wrote: "ingress",
    # "egress", "east-west" or "waypoint". Only ingress gateways are acted on by default.
    role: str = "ingress"
