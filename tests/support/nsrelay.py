"""A TCP relay from a lab network namespace's loopback to this machine's: a process in the
lab's client namespace (where the balancer's address is) reaches the lab API server, which
listens on the host's 127.0.0.1, at the same address and port.

The listening socket is made in the namespace by a thread that enters it with setns(2) (a
thread's network namespace is its own); each accepted connection is relayed to the host's
loopback from this process's own namespace. Threads stop, and sockets close, on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator

from tests.support.shuttle import shuttle

CLONE_NEWNET = 0x40000000


def _listen_in(netns: str, host: str, port: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_listen() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {netns}")
            try:
                made.append(socket.create_server((host, port)))
            finally:
                libc.setns(own, CLONE_NEWNET)
        except BaseException as exc:
            failed.append(exc)
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=enter_and_listen)
    thread.start()
    thread.join(10)
    if failed:
        raise failed[0]
    return made[0]


@contextlib.contextmanager
def loopback_relay(netns: str, host: str, port: int) -> Iterator[None]:
    """`host:port` in `netns` relays to `host:port` here (host is a loopback address)."""
    listener = _listen_in(netns, host, port)
    stop = threading.Event()
    sockets: list[socket.socket] = [listener]

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            shuttle(a, b, stop)
        finally:
            a.close()
            b.close()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                inside, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                outside = socket.create_connection((host, port), timeout=10)
            except OSError:
                inside.close()
                continue
            sockets.extend((inside, outside))
            threading.Thread(target=pipe, args=(inside, outside), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield
    finally:
        stop.set()
        server.join(10)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
