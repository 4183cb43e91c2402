"""The kernel's view of one TCP socket: segments in, and the state, from TCP_INFO.

Linux `getsockopt(IPPROTO_TCP, TCP_INFO)` fills `struct tcp_info` (linux/tcp.h; fields are only
ever appended, so each is read only when the length the kernel returned covers it). macOS
`TCP_CONNECTION_INFO` (0x106) fills `struct tcp_connection_info` (xnu bsd/netinet/tcp.h).

A peer's keepalive probe carries no data: it moves the segments-in counter while the data
counters stay (Linux: `tcpi_data_segs_in`, or `tcpi_last_data_recv` growing on kernels without
it; macOS: `tcpi_rxbytes`). Decoding is pure; `read` is the one getsockopt.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

LINUX_TCP_INFO = 11  # include/uapi/linux/tcp.h
MACOS_TCP_CONNECTION_INFO = 0x106  # xnu bsd/netinet/tcp.h
READ_SIZE = 512  # larger than any struct either kernel returns today

# struct tcp_info byte offsets (linux/tcp.h): eight u8, then u32 fields, then u64 from 104.
_LINUX_STATE = 0
_LINUX_LAST_DATA_RECV = 52
_LINUX_LAST_ACK_RECV = 56
_LINUX_SEGS_OUT = 136
_LINUX_SEGS_IN = 140
_LINUX_DATA_SEGS_IN = 152
LINUX_ESTABLISHED = 1  # include/net/tcp_states.h

# struct tcp_connection_info (xnu): four u8, thirteen u32 and a u32 bitfield, then u64s at 56.
_MACOS_STATE = 0
_MACOS_TXPACKETS = 56
_MACOS_RXPACKETS = 80
_MACOS_RXBYTES = 88
MACOS_ESTABLISHED = 4  # bsd/netinet/tcp_fsm.h TCPS_ESTABLISHED


@dataclass(frozen=True)
class Sample:
    """Counters of one socket at one moment. `data_in` counts what carried data (segments on
    Linux, bytes on macOS); None where the kernel's struct is too short to say."""

    established: bool
    segs_in: int
    data_in: int | None
    last_data_recv_ms: int | None  # Linux only: milliseconds since data last arrived


def _u32(raw: bytes, offset: int) -> int | None:
    if len(raw) < offset + 4:
        return None
    value: int = struct.unpack_from("=I", raw, offset)[0]
    return value


def _u64(raw: bytes, offset: int) -> int | None:
    if len(raw) < offset + 8:
        return None
    value: int = struct.unpack_from("=Q", raw, offset)[0]
    return value


def decode_linux(raw: bytes) -> Sample | None:
    """A Linux `struct tcp_info` as the kernel returned it; None before kernel 4.2 (no
    segment counters)."""
    segs_in = _u32(raw, _LINUX_SEGS_IN)
    if segs_in is None or not raw:
        return None
    return Sample(established=raw[_LINUX_STATE] == LINUX_ESTABLISHED, segs_in=segs_in,
                  data_in=_u32(raw, _LINUX_DATA_SEGS_IN),
                  last_data_recv_ms=_u32(raw, _LINUX_LAST_DATA_RECV))


def decode_macos(raw: bytes) -> Sample | None:
    """A macOS `struct tcp_connection_info`; None when too short for the packet counters."""
    packets = _u64(raw, _MACOS_RXPACKETS)
    if packets is None or not raw:
        return None
    return Sample(established=raw[_MACOS_STATE] == MACOS_ESTABLISHED, segs_in=packets,
                  data_in=_u64(raw, _MACOS_RXBYTES), last_data_recv_ms=None)


def read(sock: socket.socket, platform: str = sys.platform) -> Sample | None:
    """The socket's counters now, or None where this system cannot tell."""
    if platform.startswith("linux"):
        option, decode = LINUX_TCP_INFO, decode_linux
    elif platform == "darwin":
        option, decode = MACOS_TCP_CONNECTION_INFO, decode_macos
    else:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, READ_SIZE)
    except (OSError, ValueError):  # closed, or an option this kernel lacks
        return None
    return decode(raw)


class ProbeCounter:
    """Counts the peer's keepalive probes between samples of one idle socket.

    Segments in that carried no data count; an interval that ends with the socket no longer
    established is left out, since its last segment was the FIN or RST that ended it.
    """

    def __init__(self, first: Sample) -> None:
        self.last = first
        self.count = 0

    def update(self, now: Sample) -> int:
        before, self.last = self.last, now
        if not now.established:
            return self.count
        segments = now.segs_in - before.segs_in
        if now.data_in is not None and before.data_in is not None:
            if now.last_data_recv_ms is None:  # macOS: data_in counts bytes, not segments
                if now.data_in != before.data_in:
                    return self.count
            else:
                segments -= now.data_in - before.data_in
        elif (now.last_data_recv_ms is not None and before.last_data_recv_ms is not None
              and now.last_data_recv_ms < before.last_data_recv_ms):
            return self.count  # data arrived in this interval: its segments are not probes
        self.count += max(0, segments)
        return self.count
