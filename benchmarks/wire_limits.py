"""The client's memory and time on large answers, against a loopback API server
(tests/wire/hostile_api.py); prints a markdown table.

- Peak RSS of `kubectl-keepalive status` (its own process, `wait4`'s ru_maxrss) reading a
  config dump of 64 and 256 MiB through port-forward: the golden dump padded with whitespace
  (what receiving costs), and one grown with copies of its listeners (receiving and parsing).
- Receive time of one websocket frame and of an exec stdout (32 KiB frames, as a kubelet sends
  them) of 8 to 64 MiB, and per MiB: a constant time per MiB is a linear receive (median of 5).

    .venv/bin/python benchmarks/wire_limits.py
"""

from __future__ import annotations

import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubectl_keepalive.kube.client import streams, websock  # noqa: E402
from tests.wire.hostile_api import (  # noqa: E402
    GOLDEN_DUMP,
    PLUGIN,
    Conn,
    Request,
    accept_upgrade,
    hostile_api,
    http_answer,
    serve_port_forward,
    write_kubeconfig,
    ws_binary,
    ws_close,
    ws_frame,
)

MIB = 1024 * 1024


def padded_dump(size: int) -> bytes:
    dump = GOLDEN_DUMP.read_bytes()
    return dump + b" " * (size - len(dump))


def grown_dump(size: int) -> bytes:
    """The golden dump with copies of its dynamic listeners (renamed) up to about `size`."""
    document = json.loads(GOLDEN_DUMP.read_text())
    listeners = next(c for c in document["configs"] if "dynamic_listeners" in c)
    originals = listeners["dynamic_listeners"]
    one = len(json.dumps(originals[0]))
    copies = []
    for index in range(max(0, (size - len(GOLDEN_DUMP.read_bytes())) // one - 1)):
        entry = copy.deepcopy(originals[index % len(originals)])
        entry["name"] = f"copy-{index}-{entry['name']}"
        copies.append(entry)
    listeners["dynamic_listeners"] = originals + copies
    return json.dumps(document).encode()


def peak_rss_of_status(dump: bytes) -> tuple[int, int, float]:
    """(exit code, peak RSS in MiB, seconds) of one `status` reading `dump`."""
    def answer(conn: Conn, request: Request) -> bool:
        accept_upgrade(conn, request)
        serve_port_forward(conn, lambda _path: http_answer(200, dump))
        return False

    with tempfile.TemporaryDirectory() as folder, hostile_api(portforward=answer) as api:
        kubeconfig = write_kubeconfig(Path(folder), api.url)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": folder,
               "KUBECONFIG": str(kubeconfig)}
        started = time.monotonic()
        process = subprocess.Popen([str(PLUGIN), "status", "--timeout", "120s"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss // 1024, seconds


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


def timed_receive(send: Callable[[socket.socket], None],
                  receive: Callable[[websock.WebSocket], None]) -> float:
    client, server = loopback_pair()
    sender = threading.Thread(target=send, args=(server,), daemon=True)
    try:
        ws = websock.WebSocket(client, websock._Reader(client), None)
        started = time.perf_counter()
        sender.start()
        receive(ws)
        return time.perf_counter() - started
    finally:
        sender.join(timeout=60)
        client.close()
        server.close()


def one_frame(size: int) -> float:
    payload = bytes(size)
    frame = ws_frame(0x2, payload)

    def receive(ws: websock.WebSocket) -> None:
        ws.settimeout(60)
        assert len(ws.recv_data()[1]) == size

    return timed_receive(lambda sock: sock.sendall(frame), receive)


def exec_stream(size: int, piece: int = 32 * 1024) -> float:
    block = ws_binary(1, bytes(piece))
    status = ws_binary(3, json.dumps({"status": "Success"}).encode()) + ws_close()

    def send(sock: socket.socket) -> None:
        sock.sendall(block * (size // piece) + status)

    def receive(ws: websock.WebSocket) -> None:
        assert len(streams.exec_output(ws, 60).stdout) == size

    return timed_receive(send, receive)


def median(measure: Callable[[int], float], size: int, runs: int = 5) -> float:
    return statistics.median(measure(size) for _ in range(runs))


def main() -> None:
    print("| config dump through port-forward | size | exit | peak RSS | time |")
    print("|---|---|---|---|---|")
    for kind, make in (("padded (receive)", padded_dump), ("listeners (receive + parse)",
                                                           grown_dump)):
        for size in (64 * MIB, 256 * MIB):
            dump = make(size)
            code, rss, seconds = peak_rss_of_status(dump)
            print(f"| {kind} | {len(dump) / MIB:.0f} MiB | {code} | {rss} MiB | "
                  f"{seconds:.1f} s |")
    print()
    sizes = (8, 16, 32, 64)
    print("| receive | " + " | ".join(f"{size} MiB" for size in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, measure in (("one websocket frame", one_frame),
                          ("exec stdout, 32 KiB frames", exec_stream)):
        times = [median(measure, size * MIB) for size in sizes]
        cells = " | ".join(f"{t * 1000:.0f} ms ({t * 1000 / size:.1f} ms/MiB)"
                           for t, size in zip(times, sizes))
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
