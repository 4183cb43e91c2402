"""kubectl-keepalive: TCP keepalive on Istio ingress gateways, applied and verified live."""

__version__ = "0.1.0"
