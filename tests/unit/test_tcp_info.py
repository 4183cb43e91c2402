"""TCP_INFO as `probe` reads it: against the running kernel on a real loopback connection, and
macOS's struct decoded from bytes laid out by ctypes after xnu's header (no Mac here: the bytes
are built, not recorded, and the test's name says so)."""

from __future__ import annotations

import ctypes
import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from kubectl_keepalive.probe import tcpinfo

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux TCP_INFO")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(accepted server side, client side) of one loopback connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def _keepalive(sock: socket.socket, idle: int, interval: int, probes: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, probes)


@linux_only
def test_the_peers_keepalive_probes_move_segs_in_while_no_data_arrives(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    server.sendall(b"x")
    assert client.recv(1) == b"x"
    _keepalive(server, 1, 1, 9)
    first = tcpinfo.read(client)
    assert first is not None and first.established
    counter = tcpinfo.ProbeCounter(first)
    raw_first = client.getsockopt(socket.IPPROTO_TCP, tcpinfo.LINUX_TCP_INFO, 512)
    deadline = time.monotonic() + 5.5
    while time.monotonic() < deadline:
        time.sleep(0.25)
        sample = tcpinfo.read(client)
        assert sample is not None
        counter.update(sample)
    raw_last = client.getsockopt(socket.IPPROTO_TCP, tcpinfo.LINUX_TCP_INFO, 512)
    # Idle 1 s, interval 1 s: a probe at about 1, 2, 3, 4 and 5 s (FACTS.md: +5 in 5.5 s).
    assert 4 <= counter.count <= 6, counter.count
    # The raw counters, read here by their own offsets in linux/tcp.h, agree with the decoder.
    segs_in = struct.unpack_from("=I", raw_last, 140)[0] - struct.unpack_from(
        "=I", raw_first, 140)[0]
    assert segs_in == counter.count
    last_data_recv = struct.unpack_from("=I", raw_last, 52)[0]
    assert last_data_recv >= 5000  # no data all along, only probes
    # Our kernel answered each probe with an ACK: segs_out moved as much.
    segs_out = struct.unpack_from("=I", raw_last, 136)[0] - struct.unpack_from(
        "=I", raw_first, 136)[0]
    assert segs_out == counter.count


@linux_only
def test_without_keepalive_nothing_arrives_and_data_is_not_counted(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    first = tcpinfo.read(client)
    assert first is not None
    counter = tcpinfo.ProbeCounter(first)
    time.sleep(1.5)
    sample = tcpinfo.read(client)
    assert sample is not None and counter.update(sample) == 0
    server.sendall(b"data")  # data is not a probe
    time.sleep(0.2)
    sample = tcpinfo.read(client)
    assert sample is not None and sample.segs_in > first.segs_in
    assert counter.update(sample) == 0


@linux_only
def test_the_fin_that_ends_the_connection_is_not_a_probe(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    first = tcpinfo.read(client)
    assert first is not None
    counter = tcpinfo.ProbeCounter(first)
    server.close()
    time.sleep(0.2)
    sample = tcpinfo.read(client)
    assert sample is not None and not sample.established
    assert sample.segs_in == first.segs_in + 1
    assert counter.update(sample) == 0


@linux_only
def test_the_struct_is_read_only_as_far_as_the_kernel_returned_it(
        pair: tuple[socket.socket, socket.socket]) -> None:
    _, client = pair
    full = client.getsockopt(socket.IPPROTO_TCP, tcpinfo.LINUX_TCP_INFO, 512)
    assert len(full) >= 160  # this kernel has tcpi_data_segs_in
    short = client.getsockopt(socket.IPPROTO_TCP, tcpinfo.LINUX_TCP_INFO, 144)
    sample = tcpinfo.decode_linux(short)
    assert sample is not None and sample.data_in is None  # not read past the end
    assert tcpinfo.decode_linux(full[:140]) is None  # before kernel 4.2: cannot tell
    assert tcpinfo.decode_linux(b"") is None


def test_elsewhere_the_count_cannot_be_told(pair: tuple[socket.socket, socket.socket]) -> None:
    assert tcpinfo.read(pair[1], platform="win32") is None


class _MacConnectionInfo(ctypes.Structure):
    """xnu bsd/netinet/tcp.h `struct tcp_connection_info`, field by field."""

    _fields_ = [("tcpi_state", ctypes.c_uint8), ("tcpi_snd_wscale", ctypes.c_uint8),
                ("tcpi_rcv_wscale", ctypes.c_uint8), ("pad1", ctypes.c_uint8),
                *[(name, ctypes.c_uint32) for name in (
                    "tcpi_options", "tcpi_flags", "tcpi_rto", "tcpi_maxseg",
                    "tcpi_snd_ssthresh", "tcpi_snd_cwnd", "tcpi_snd_wnd", "tcpi_snd_sbbytes",
                    "tcpi_rcv_wnd", "tcpi_rttcur", "tcpi_srtt", "tcpi_rttvar", "tfo_bits")],
                *[(name, ctypes.c_uint64) for name in (
                    "tcpi_txpackets", "tcpi_txbytes", "tcpi_txretransmitbytes",
                    "tcpi_rxpackets", "tcpi_rxbytes", "tcpi_rxoutoforderbytes",
                    "tcpi_txretransmitpackets")]]


def _mac_bytes(state: int, rxpackets: int, rxbytes: int) -> bytes:
    # Values of an idle macOS connection as published from a real one (maxseg 1368, srtt 79).
    info = _MacConnectionInfo(tcpi_state=state, tcpi_snd_wscale=8, tcpi_rcv_wscale=6,
                              tcpi_options=7, tcpi_maxseg=1368, tcpi_snd_cwnd=4380,
                              tcpi_rttcur=79, tcpi_srtt=79, tcpi_rttvar=39, tcpi_txpackets=12,
                              tcpi_rxpackets=rxpackets, tcpi_rxbytes=rxbytes)
    return bytes(info)


def test_macos_connection_info_decoded_from_bytes_built_per_xnu_header_not_recorded() -> None:
    raw = _mac_bytes(tcpinfo.MACOS_ESTABLISHED, 20, 3000)
    assert len(raw) == 112  # the size macOS returns for TCP_CONNECTION_INFO
    first = tcpinfo.decode_macos(raw)
    assert first == tcpinfo.Sample(True, 20, 3000, None)
    counter = tcpinfo.ProbeCounter(first)
    # Three probes: packets in, no bytes in.
    assert counter.update(tcpinfo.decode_macos(_mac_bytes(4, 23, 3000))) == 3  # type: ignore
    # Data arrived: not probes.
    assert counter.update(tcpinfo.decode_macos(_mac_bytes(4, 25, 3500))) == 3  # type: ignore
    # Closed (CLOSE_WAIT is 5): the FIN is not a probe.
    closed = tcpinfo.decode_macos(_mac_bytes(5, 26, 3500))
    assert closed is not None and not closed.established
    assert counter.update(closed) == 3
    # An older struct without the last counter still has rxpackets and rxbytes.
    assert tcpinfo.decode_macos(raw[:104]) == first
    assert tcpinfo.decode_macos(raw[:84]) is None
