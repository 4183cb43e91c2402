"""The command line: argv -> validated request -> use case -> output and exit code.

The only layer that prints or exits. It may import every layer below it (usecases, doctor,
istio, envoy, kube, kube.client) and the shared modules (model, errors, durations); nothing
imports it.
"""

from __future__ import annotations
