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
    # Of those, sockets showing another timer (a retransmit, say): ss shows one timer per
    # socket, so whether they have keepalive cannot be told now.
    other_timer: int = 0

    @property
    def without_keepalive(self) -> int:
        """Sockets with no timer at all: keepalive would show while idle, so they have none.
        On a listener that has keepalive, those were accepted before the change."""
        return self.established - self.keepalive - self.other_timer


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
        counts = totals.setdefault(int(port), [0, 0, 0])
        counts[0] += 1
        keepalive = "timer:(keepalive" in line
        counts[1] += keepalive
        counts[2] += not keepalive and "timer:(" in line
    return {port: Connections(*counts) for port, counts in totals.items()}
