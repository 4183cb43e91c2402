"""`probe`'s socket work: hold a real connection idle through the real path and see what comes
back. Connect (directly or through a CONNECT proxy), TLS, bounded HTTP/1.1 requests and answers,
the kernel's TCP_INFO counters of the held socket; targets, hold times and proxies from the
environment as plain records.

It knows nothing of Kubernetes or Istio: it may import only the shared modules (errors,
durations), never kube, envoy, istio, doctor, the use cases or the command line. Every byte it
reads has a size bound and a deadline; server text leaves it escaped.
"""

from __future__ import annotations
