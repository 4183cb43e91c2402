"""Bytes both ways between two connected sockets, for the relays and proxies tests run."""

from __future__ import annotations

import select
import socket
import threading


def shuttle(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Copy what either socket receives to the other until one side closes or `stop` is set.
    OSError (a side reset) ends it like a close; the caller closes the sockets."""
    try:
        while not stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.2)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
