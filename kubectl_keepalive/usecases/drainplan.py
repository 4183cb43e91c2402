"""What enable and disable will cut, and when: in-flight counts and drain timings per gateway,
and the wait for a quiet moment (`--when-quiet`).

Uses each target pod's Envoy stats (read with its config dump, or through `cluster.read_admin`),
its proxy config annotation and grace period as it was listed, and the mesh config of its
revision.
Anything unreadable degrades to a note; planning never fails here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from kubectl_keepalive.envoy import inflight
from kubectl_keepalive.errors import ForbiddenError, KeepaliveError, VerificationError
from kubectl_keepalive.istio import proxyconfig
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.model import Gateway, Pod


@dataclass(frozen=True)
class Target:
    """One pod to measure, the stat prefixes its config dump names per port, and its /stats
    when they were read with the dump (else the first measurement reads them)."""

    pod: Pod
    prefixes: dict[int, inflight.Prefixes] = field(default_factory=dict, hash=False)
    stats: bytes | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PodDrain:
    pod: str
    timings: proxyconfig.Timings
    loads: dict[int, inflight.PortLoad] = field(default_factory=dict, hash=False)
    error: str | None = None  # stats unreadable: counts unknown


@dataclass(frozen=True)
class GatewayDrain:
    ports: tuple[int, ...]
    pods: tuple[PodDrain, ...]
    notes: tuple[str, ...] = ()

    def load(self, port: int) -> inflight.PortLoad:
        total = inflight.PortLoad(port, 0, 0, 0)
        for pod in self.pods:
            total = total + pod.loads.get(port, inflight.PortLoad(port, 0, 0, 0))
        return total

    @property
    def counted(self) -> bool:
        """Every pod's stats were read (else the counts are a lower bound)."""
        return all(p.error is None for p in self.pods)

    @property
    def drain(self) -> proxyconfig.Timing | None:
        """The longest push drain among the pods: when the last old listener closes."""
        return _longest(p.timings.drain for p in self.pods)

    @property
    def pod_end(self) -> proxyconfig.Timing | None:
        return _longest(p.timings.pod_end for p in self.pods)


# From this Envoy version on, a listener update that changes socket options replaces the
# listener (new sockets, old one drained); before it the update was silently ignored.
REPLACES_IN_PLACE = (1, 25)
SERVER_INFO_PATH = "server_info"


def envoy_version(server_info: bytes | str) -> tuple[int, int] | None:
    """(major, minor) from `/server_info`'s version ("<sha>/1.40.0/Clean/RELEASE/BoringSSL")."""
    import json

    try:
        version = str(json.loads(server_info).get("version", ""))
    except (ValueError, AttributeError):
        return None
    parts = version.split("/")
    numbers = parts[1].split("-")[0].split(".") if len(parts) > 1 else []
    if len(numbers) < 2 or not all(n.isdigit() for n in numbers[:2]):
        return None
    return int(numbers[0]), int(numbers[1])


def replaces_in_place(cluster: Cluster, pods: Iterable[Pod], timeout: float) -> bool:
    """Every pod's Envoy puts changed socket options on new sockets without a restart."""
    for pod in pods:
        try:
            version = envoy_version(cluster.read_admin(pod, SERVER_INFO_PATH, timeout).body)
        except KeepaliveError:
            return False
        if version is None or version < REPLACES_IN_PLACE:
            return False
    return True


def _longest(timings: Iterable[proxyconfig.Timing]) -> proxyconfig.Timing | None:
    found = list(timings)
    return max(found, key=lambda t: t.seconds) if found else None


class MeshConfigs:
    """The mesh `defaultConfig` per revision, read once per run; a refusal is a note."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self._cache: dict[str, tuple[dict[str, object] | None, str, str | None]] = {}

    def get(self, revision: str | None) -> tuple[dict[str, object] | None, str, str | None]:
        """(defaultConfig or None, its source in words, a note or None)."""
        name = proxyconfig.configmap_name(revision)
        if name in self._cache:
            return self._cache[name]
        where = f"ConfigMap {self._namespace}/{name}"
        source = f"mesh config defaultConfig ({where})"
        try:
            data = self._cluster.get_configmap(self._namespace, name)
        except ForbiddenError:
            found: tuple[dict[str, object] | None, str, str | None] = (
                None, source, f"cannot read {where} (forbidden): mesh-wide drain settings "
                "unknown, so pods without the annotation are shown with Istio's defaults")
        except KeepaliveError as exc:
            found = (None, source, f"cannot read {where}: {exc}")
        else:
            found = self._parse(data, where, source)
        self._cache[name] = found
        return found

    @staticmethod
    def _parse(data: dict[str, str] | None, where: str,
               source: str) -> tuple[dict[str, object] | None, str, str | None]:
        if data is None:
            return None, source, f"no {where}: mesh-wide drain settings taken as Istio's defaults"
        try:
            return dict(proxyconfig.mesh_default_config(data.get(proxyconfig.MESH_KEY, ""))), \
                source, None
        except ValueError as exc:
            return None, source, f"{where} key {proxyconfig.MESH_KEY} unreadable ({exc})"


def pod_timings(pod: Pod, revision: str | None,
                meshes: MeshConfigs) -> tuple[proxyconfig.Timings, list[str]]:
    """The pod's timings from its annotation and grace period as it was listed, over the mesh
    config of its revision."""
    mesh, source, note = meshes.get(pod.injected_revision or revision)
    notes = [note] if note else []
    timings, problems = proxyconfig.resolve(pod.proxy_config, mesh, source, pod.grace_period)
    return timings, notes + [f"pod {pod.name}: {p}" for p in problems]


def read_loads(cluster: Cluster, target: Target, ports: Sequence[int],
               timeout: float) -> dict[int, inflight.PortLoad]:
    """One pod's counts on the ports, read now; raises the project's errors when unreadable."""
    return loads_in(target, cluster.read_admin(target.pod, inflight.STATS_PATH, timeout).body,
                    ports)


def loads_in(target: Target, body: bytes, ports: Sequence[int]) -> dict[int, inflight.PortLoad]:
    try:
        stats = inflight.parse_stats(body)
    except ValueError as exc:
        raise VerificationError(f"pod {target.pod.name}: unreadable stats: {exc}") from None
    return inflight.load_by_port(stats, target.prefixes, ports)


def measure(cluster: Cluster, gateway: Gateway, targets: Sequence[Target],
            ports: Sequence[int], meshes: MeshConfigs, timeout: float) -> GatewayDrain:
    pods = []
    notes: list[str] = []
    for target in targets:
        timings, more = pod_timings(target.pod, gateway.revision, meshes)
        notes.extend(n for n in more if n not in notes)
        try:
            loads = (loads_in(target, target.stats, ports) if target.stats is not None
                     else read_loads(cluster, target, ports, timeout))
        except KeepaliveError as exc:
            pods.append(PodDrain(target.pod.name, timings, error=str(exc)))
            continue
        pods.append(PodDrain(target.pod.name, timings, loads))
    return GatewayDrain(tuple(sorted(set(ports))), tuple(pods), tuple(notes))


def wait_quiet(cluster: Cluster, targets: Sequence[tuple[Target, Sequence[int]]], limit: int,
               timeout: float, report: Callable[[str], None],
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, poll: float = 1.0,
               read_timeout: float = 10.0) -> float:
    """Until every target pod has at most `limit` in flight on its ports; returns the seconds
    waited. On timeout a VerificationError (exit 4), before anything was written."""
    start = clock()
    deadline = start + timeout
    while True:
        busy: list[str] = []
        for target, ports in targets:
            try:
                loads = read_loads(cluster, target, ports, read_timeout)
            except KeepaliveError as exc:
                busy.append(f"{target.pod.name}: in flight unknown ({exc})")
                continue
            count = sum(load.in_flight for load in loads.values())
            if count > limit:
                where = ", ".join(f"{p}: {loads[p].in_flight}" for p in sorted(loads)
                                  if loads[p].in_flight)
                busy.append(f"{target.pod.name}: {count} in flight ({where})")
        if not busy:
            return clock() - start
        if clock() >= deadline:
            raise VerificationError(
                f"not quiet within the timeout (at most {limit} in flight wanted): "
                f"{'; '.join(busy)}; nothing was changed")
        report(f"waiting for a quiet moment (at most {limit} in flight): {'; '.join(busy)}")
        sleep(max(0.0, min(poll, deadline - clock())))
