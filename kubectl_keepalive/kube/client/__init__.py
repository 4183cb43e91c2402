"""A Kubernetes client that knows nothing of Istio or keepalive: kubeconfig and credentials as
kubectl resolves them, TLS, proxies, an HTTP connection pool, a websocket client and the
channels of port-forward and exec.

It imports only itself, `kubectl_keepalive.errors` (its refusals), `kubectl_keepalive.terminal`
(server text it quotes in them, escaped and cut) and the package's `__version__` (its
User-Agent); never the model or any layer above.
"""

from __future__ import annotations
