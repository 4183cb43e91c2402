"""Plain frozen records that the rest of the plugin passes around.

Parsed from external formats at the edges (envoy_dump, kube); nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# The pod annotation that overrides the mesh's proxy config for one pod (Istio's ProxyConfig).
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
# The label (on configs and pods) and pod annotation naming the Istio revision that serves them.
REVISION_LABEL = "istio.io/rev"


@dataclass(frozen=True)
class KeepaliveSettings:
    """What `enable` asks for: seconds before the first probe, between probes, probe count."""

    idle: int
    interval: int
    probes: int


@dataclass(frozen=True)
class SocketOption:
    """One Envoy `SocketOption` whose value is an integer (`int_value`, or a `buf_value` read as
    the little-endian C int setsockopt would get). `int_value` is None when a `buf_value` is
    too short to hold one. `socket_type` is "stream" (TCP only), "datagram" (UDP only) or None
    (both), from the option's `type`."""

    level: int
    name: int
    int_value: int | None
    state: str = "STATE_PREBIND"
    socket_type: str | None = None


@dataclass(frozen=True)
class TcpKeepalive:
    """Envoy's `core.v3.TcpKeepalive` (Listener.tcp_keepalive, Envoy >= 1.37), in seconds.

    Present means SO_KEEPALIVE is set; an absent number leaves the kernel's default.
    """

    time: int | None = None
    interval: int | None = None
    probes: int | None = None


@dataclass(frozen=True)
class Keepalive:
    """Keepalive as a listener's config sets it on accepted sockets.

    Numbers are None when nothing sets them: the kernel's default applies when `enabled`.
    `duplicated` is True when one of the socket options appears more than once (several MERGE
    filters). `sources` names what set it: "tcp_keepalive" and/or "socket_options".
    """

    enabled: bool
    idle: int | None = None
    interval: int | None = None
    probes: int | None = None
    duplicated: bool = False
    sources: tuple[str, ...] = ()

    def matches(self, wanted: KeepaliveSettings) -> bool:
        return (
            self.enabled
            and (self.idle, self.interval, self.probes)
            == (wanted.idle, wanted.interval, wanted.probes)
        )

    @property
    def kernel_fields(self) -> tuple[str, ...]:
        """The timers left to the kernel's sysctls (only meaningful when enabled)."""
        if not self.enabled:
            return ()
        values = (("idle", self.idle), ("interval", self.interval), ("probes", self.probes))
        return tuple(name for name, value in values if value is None)

    def effective(self, kernel: KeepaliveSettings) -> KeepaliveSettings | None:
        """The timers the socket runs with, unset ones taken from `kernel`; None when off."""
        if not self.enabled:
            return None
        return KeepaliveSettings(
            kernel.idle if self.idle is None else self.idle,
            kernel.interval if self.interval is None else self.interval,
            kernel.probes if self.probes is None else self.probes,
        )


class ListenerState(str, enum.Enum):
    """Where a listener version sits in Envoy's listener manager."""

    ACTIVE = "active"  # serving traffic: what the sockets really have
    WARMING = "warming"  # accepted, waiting for its dependencies: pending
    DRAINING = "draining"  # being replaced; still holds old connections
    REJECTED = "rejected"  # the last update failed (error_state); the active version stays


@dataclass(frozen=True)
class AdditionalAddress:
    """One of `Listener.additional_addresses`. None means "as the listener": an address
    inherits the listener's `socket_options` and `tcp_keepalive` unless it overrides them, and
    an empty `socket_options` override means no socket options on that address."""

    address: str
    port: int | None
    options: tuple[SocketOption, ...] | None = None
    tcp_keepalive: TcpKeepalive | None = None


@dataclass(frozen=True)
class Listener:
    name: str
    port: int | None
    protocol: str  # "TCP", "UDP", "PIPE" (unix socket) or "INTERNAL" (envoy internal)
    state: ListenerState
    static: bool = False
    options: tuple[SocketOption, ...] = ()
    error: str | None = None
    tcp_keepalive: TcpKeepalive | None = None
    additional_addresses: tuple[AdditionalAddress, ...] = ()


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RolloutState:
    """The parts of a Deployment that kubectl's `rollout status` looks at."""

    generation: int
    observed_generation: int
    spec_replicas: int
    replicas: int
    updated_replicas: int
    available_replicas: int
    paused: bool = False
    conditions: tuple[Condition, ...] = field(default=())


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
    # The istio-proxy container's args: `proxy router` (gateway), `proxy waypoint`, `proxy
    # sidecar`. What the proxy does when its labels do not say.
    proxy_args: tuple[str, ...] = ()
    # What the drain estimate needs, as the pod was listed: its `proxy.istio.io/config`
    # annotation and spec.terminationGracePeriodSeconds (raw; proxyconfig checks them).
    proxy_config: str | None = None
    grace_period: object = None


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
    # Its rollout as it was listed (None when not read with it): a plan looks here instead of
    # asking again; waiting for a rollout always reads afresh.
    rollout: RolloutState | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Gateway:
    """An Istio proxy Deployment (when found), the selector its pods share, its pods."""

    namespace: str
    name: str
    selector: dict[str, str] = field(default_factory=dict, hash=False)
    revision: str | None = None
    pods: tuple[Pod, ...] = ()
    deployment: Deployment | None = None
    # The proxy's job, decided by discovery from what its installer wrote: "ingress",
    # "egress", "east-west" or "waypoint". Only ingress gateways are acted on by default.
    role: str = "ingress"
    # What runs in the pods: "envoy", or "agentgateway" (not Envoy: no EnvoyFilter reaches it).
    proxy: str = "envoy"
