"""`kubectl keepalive doctor`: every timer that can cut a long request, which fires first, the fix.

Pure core, in four steps that the use case (`usecases.diagnose`) and the CLI chain:
  timers.read_port(dump, port)            -> PortTimers     (Envoy config dump -> timers)
  balancers.detect(service, provider_ids) -> Balancer       (Service in front -> its idle timer)
  analysis.analyze(port, balancer, profile, drains) -> Report  (when each fires, the first, fixes)
  render.table(report) / render.document(report)            (text and -o json)
No I/O anywhere: the caller fetches the dump, the Service and the nodes.

It may import istio, envoy, kube and the shared modules (model, errors, durations); never the
use cases or the command line.
"""

from __future__ import annotations
