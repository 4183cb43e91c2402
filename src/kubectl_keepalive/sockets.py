"""Kernel-level evidence: established downstream connections and their keepalive timers.

Reads `ss -tnoH state established` output (the proxyv2 image ships ss; distroless images do not).
Pure: text in, counts out.
"""

from __future__ import annotations

from dataclasses import dataclass

SS_COMMAND = ["ss", "-tnoH", "state", "established"]


@dataclass(frozen=True)
class Connections:
    established: int
    keepalive: int  # of those, sockets whose timer is a keepalive timer


def count_by_local_port(ss_output: str) -> dict[int, Connections]:
    """Per local port: established sockets, and how many carry `timer:(keepalive,...)`."""
    totals: dict[int, list[int]] = {}
    for line in ss_output.splitlines():
        fields = line.split()
        # With a state filter ss leaves the State column out: Recv-Q Send-Q Local Peer ...
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        _, _, port = fields[2].rpartition(":")
        if not port.isdigit():
            continue
        counts = totals.setdefault(int(port), [0, 0])
        counts[0] += 1
        counts[1] += "timer:(keepalive" in line
    return {port: Connections(total, keepalive) for port, (total, keepalive) in totals.items()}
