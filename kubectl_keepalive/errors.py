"""The project's errors, each carrying the exit code the CLI returns for it.

Only `cli` turns these into output and exit codes; every other module raises them.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHANGES = 1  # `diff` found something `enable` would change
EXIT_USAGE = 2  # bad flags or input; nothing was contacted or changed
EXIT_CLUSTER = 3  # the cluster refused or failed a request, or a foreign filter is in the way
EXIT_VERIFY = 4  # the write went through but the options are not live
EXIT_INTERNAL = 5  # an unexpected failure inside the plugin (a bug): one line, -v for more
EXIT_UNKNOWN = 6  # doctor cannot tell: a timer that may cut the request is not known
EXIT_INTERRUPTED = 130


class KeepaliveError(Exception):
    """Base class: a message for one `error: ...` line and an exit code."""

    exit_code = EXIT_CLUSTER


class UsageError(KeepaliveError):
    """Bad flags, values or input files."""

    exit_code = EXIT_USAGE


class ClusterError(KeepaliveError):
    """The API server (or a pod behind it) could not do what was asked."""

    exit_code = EXIT_CLUSTER


class UnavailableError(ClusterError):
    """The API server did not answer (timeout, refused or reset connection) or said it cannot
    now (5xx, 429): worth asking again while a wait still has time, unlike a refusal."""


class ForbiddenError(ClusterError):
    """RBAC refused a request; the message names the verb and resource."""


class ConflictError(ClusterError):
    """Someone else's EnvoyFilter already sets keepalive on the same gateway port, or another
    writer changed ours while this run waited on it."""


class AlreadyExists(KeepaliveError):
    """Create lost a race: the object appeared since it was read. Callers re-read and retry."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"envoyfilter {namespace}/{name} already exists")


class VerificationError(KeepaliveError):
    """The filter was written but the live listeners do not show the wanted options."""

    exit_code = EXIT_VERIFY
