"""The Kubernetes verbs the use cases need: the `Cluster` protocol (`cluster`), its adapter over
the plugin's own client (`api`), label selectors, the rollout completion rule, the RBAC the
plugin needs.

It may import its client (`kube.client`) and the shared modules; nothing of envoy, istio,
doctor, the use cases or the command line.
"""

from __future__ import annotations
