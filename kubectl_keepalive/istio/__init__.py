"""Istio's objects: the managed EnvoyFilter and its predicted MERGE, gateway discovery and
roles, proxy config and revisions, the filter's own workload selector.

Pure. It may import envoy, kube and the shared modules; never doctor, the use cases or the
command line.
"""

from __future__ import annotations
