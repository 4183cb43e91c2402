"""Work on a second thread while the caller does its own: the REST reads that need no pod's
Envoy, made while the port-forwards read the Envoys."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def started(work: Callable[[], T]) -> Callable[[], T]:
    """`work` running on its own thread; call the result to wait for it and get what it
    returned, or its exception. (A thread, not a pool: one-pod commands start no pool.)"""
    import threading

    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        if failed:
            raise failed[0]
        return done[0]

    return wait
