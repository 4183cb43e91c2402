"""Envoy's formats: config dumps (admin API and istioctl JSON) -> listeners, socket options,
admin stats of what is in flight, the kernel's socket timers.

Pure parsers that check every shape they read. They may import kube and the shared modules;
nothing of Istio, doctor, the use cases or the command line.
"""

from __future__ import annotations
