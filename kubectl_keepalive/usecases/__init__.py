"""The use cases: status, the plans of diff/enable/disable, carrying a plan out, doctor's reads.

They return reports and never print. They may import doctor, istio, envoy, the shared modules,
and from kube the protocol (`kube.cluster.Cluster`), label selectors and the rollout rule; they
reach the cluster only through that protocol and catch only the project's own errors, never
`kube.api` or `kube.client`. Nothing below imports them.
"""

from __future__ import annotations
