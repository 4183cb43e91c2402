"""The REST reads a plan needs beyond status, made while the pods' Envoys are read.

Once discovery has found the gateways, three things need no pod's Envoy: the balancer-aware
settings (Services, nodes), each acted-on gateway's selector check (the pods its base selector
lists) and the mesh config of each pod's revision. `status` runs `PlanReads.read` on its second
thread, beside the port-forwards. A failure is kept and raised where the plan asks for that
answer, so a command fails at the same step, with the same error, as when it asked in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.istio import discovery
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.model import Gateway, KeepaliveSettings, Pod
from kubectl_keepalive.usecases.background import Outcome

if TYPE_CHECKING:
    from kubectl_keepalive.usecases import drainplan

SettingsFor = Callable[[Sequence[Gateway]], KeepaliveSettings]


class PlanReads:
    """What one plan reads over REST besides status, read once (on the first status pass)."""

    def __init__(self, cluster: Cluster, root_namespace: str, user_selected: bool,
                 base_selector: Callable[[Gateway], dict[str, str]],
                 settings: KeepaliveSettings | SettingsFor | None) -> None:
        from kubectl_keepalive.usecases import drainplan

        self._cluster = cluster
        self._user_selected = user_selected
        self._base_selector = base_selector
        self._settings_in = settings
        self._settings: Outcome[KeepaliveSettings] | None = None
        self._listed: dict[tuple[str, str], Outcome[list[Pod]]] = {}
        self.meshes: drainplan.MeshConfigs = drainplan.MeshConfigs(cluster, root_namespace)
        self._done = False

    def read(self, gateways: list[Gateway]) -> None:
        """Everything the plan will ask, for the gateways discovery found (status calls it)."""
        from kubectl_keepalive.istio import own_selector

        if self._done:
            return
        self._done = True
        acted = [g for g in gateways if discovery.acted_on(g, self._user_selected)]
        chosen = self._settings_in
        if chosen is not None and not isinstance(chosen, KeepaliveSettings):
            self._settings = Outcome(lambda: chosen(acted))
        for gateway in acted:
            try:
                base = self._base_selector(gateway)
            except UsageError:
                continue  # raised again where the plan builds this gateway's filter
            namespace, selector = gateway.namespace, own_selector.selector_text(base)
            if (namespace, selector) not in self._listed:
                self._listed[namespace, selector] = self._listing(namespace, selector)
            for pod in gateway.pods:
                self.meshes.get(pod.injected_revision or gateway.revision)  # notes, not errors

    def _listing(self, namespace: str, selector: str) -> Outcome[list[Pod]]:
        return Outcome(lambda: self._cluster.list_pods(namespace, selector))

    def settings(self, acted: Sequence[Gateway]) -> KeepaliveSettings:
        chosen = self._settings_in
        if isinstance(chosen, KeepaliveSettings):
            return chosen
        if chosen is None:
            raise ValueError("a plan that writes settings needs them")
        return (self._settings or Outcome(lambda: chosen(acted))).get()

    def pods(self, namespace: str, selector: str) -> list[Pod]:
        """The pods `selector` lists in `namespace`, as read beside status (else now)."""
        found = self._listed.get((namespace, selector))
        return found.get() if found is not None else self._cluster.list_pods(namespace, selector)
