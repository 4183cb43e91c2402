"""Work on a second thread while the caller does its own: the REST reads that need no pod's
Envoy, made while the port-forwards read the Envoys; and the value-or-exception they hand back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Outcome(Generic[T]):
    """What `work()` gave, or the exception that came instead; `get` gives the one or raises
    the other, where the caller asks for it."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        try:
            self._value = work()
        except BaseException as exc:  # raised again by get(), on the caller's thread
            self._error = exc

    def get(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def started(work: Callable[[], T]) -> Callable[[], T]:
    """`work` running on its own thread; call the result to wait for it and get what it
    returned, or its exception. (A thread, not a pool: one-pod commands start no pool.)"""
    import threading

    outcomes: list[Outcome[T]] = []
    thread = threading.Thread(target=lambda: outcomes.append(Outcome(work)), daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        return outcomes[0].get()

    return wait
