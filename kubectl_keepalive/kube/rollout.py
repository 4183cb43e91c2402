"""Rolling a gateway Deployment the way `kubectl rollout restart` does, and waiting the way
`kubectl rollout status` decides it is done.

The completion rule mirrors kubectl's DeploymentStatusViewer: the new generation observed,
no ProgressDeadlineExceeded, all replicas updated, no old replicas left, all updated ones
available. The wait loop takes its clock and sleep as arguments so tests drive time.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from kubectl_keepalive.errors import ClusterError, UnavailableError
from kubectl_keepalive.kube.cluster import RolloutState


class RolloutFailed(ClusterError):
    """The Deployment reported ProgressDeadlineExceeded, or the wait ran out."""


@dataclass(frozen=True)
class Progress:
    done: bool
    message: str


def restarted_at(now: datetime.datetime) -> str:
    """The annotation value kubectl writes: RFC 3339 in local time with offset."""
    return now.astimezone().isoformat(timespec="seconds")


def progress(name: str, state: RolloutState) -> Progress:
    """kubectl's rule, message for message."""
    if state.generation > state.observed_generation:
        return Progress(False, "Waiting for deployment spec update to be observed...")
    for condition in state.conditions:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
    if state.updated_replicas < state.spec_replicas:
        return Progress(
            False,
            f'Waiting for deployment "{name}" rollout to finish: {state.updated_replicas} out '
            f"of {state.spec_replicas} new replicas have been updated...",
        )
    if state.replicas > state.updated_replicas:
        return Progress(
            False,
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{state.replicas - state.updated_replicas} old replicas are pending termination...",
        )
    if state.available_replicas < state.updated_replicas:
        return Progress(
            False,
            f'Waiting for deployment "{name}" rollout to finish: {state.available_replicas} of '
            f"{state.updated_replicas} updated replicas are available...",
        )
    return Progress(True, f'deployment "{name}" successfully rolled out')


def wait(
    name: str,
    read: Callable[[], RolloutState],
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    report: Callable[[str], None],
    interval: float = 1.0,
) -> None:
    """Poll until done; report each new message; RolloutFailed with the last one on timeout.

    An API server that does not answer (UnavailableError) is asked again until the timeout, as
    the rollout goes on without us; anything else it says (403, 404, a paused Deployment) ends
    the wait at once.
    """
    deadline = clock() + timeout
    last = ""
    while True:
        try:
            state = read()
            if state.paused:  # someone paused it meanwhile: it will not finish by itself
                raise RolloutFailed(
                    f'deployment "{name}" was paused during the rollout: `kubectl rollout '
                    f'resume deployment/{name}`, then re-run')
            current = progress(name, state)
        except UnavailableError as exc:
            current = Progress(False, f"the API server is not answering ({exc}); asking again "
                                      "until the timeout")
        if current.message != last:
            report(current.message)
            last = current.message
        if current.done:
            return
        if clock() >= deadline:
            raise RolloutFailed(
                f'timed out after {timeout:.0f}s waiting for deployment "{name}": {last}'
            )
        sleep(min(interval, max(0.0, deadline - clock())))
