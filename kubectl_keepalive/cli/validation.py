"""Every flag value checked before anything is contacted: kubectl's Complete/Validate step. Pure.

`cli` calls `check` between parsing and running. It returns a copy of the parsed flags with
values normalised for the commands (ports and probes as ints, the selector as the server would
print it, the connection flags as one `ConnectionFlags`), or raises UsageError with one line.
Names follow apimachinery's validation: namespaces are DNS-1123 labels, object names DNS-1123
subdomains, revisions label values; numbers are ASCII digits within range. Nothing here reads
files or the network; the kubeconfig and dumps are checked by their readers.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any, Callable

from kubectl_keepalive import durations
from kubectl_keepalive.errors import UsageError

if TYPE_CHECKING:
    from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
VERBOSITY_MAX = 10  # kubectl's levels stop meaning anything new above 9

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                        re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,9}", re.ASCII)
# Go's time.ParseDuration units, as kubectl's --request-timeout takes them.
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?|\.[0-9]{1,9})(ns|us|µs|ms|s|m|h)", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(value: str, limit: int = 60) -> str:
    """A value quoted for an error line, cut short so the line stays one line."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _dns1123(value: str, flag: str, what: str, pattern: re.Pattern[str], limit: int,
             characters: str) -> str:
    """A DNS-1123 name; `characters` says in words what `pattern` allows."""
    if len(value) > limit or not pattern.fullmatch(value):
        raise UsageError(f"{flag} {shown(value)} is not a valid {what}: at most {limit} "
                         f"{characters}, starting and ending with a letter or digit")
    return value


def namespace(value: str, flag: str) -> str:
    """A namespace is a DNS-1123 label: what the API server accepts in its path segment."""
    return _dns1123(value, flag, "namespace", _LABEL, LABEL_MAX,
                    "lowercase letters, digits and '-'")


def object_name(value: str, flag: str) -> str:
    """Deployment and EnvoyFilter names are DNS-1123 subdomains."""
    return _dns1123(value, flag, "name", _SUBDOMAIN, SUBDOMAIN_MAX,
                    "lowercase letters, digits, '-' and '.'")


def label_value(value: str, flag: str) -> str:
    from kubectl_keepalive.kube import labelselector  # here: `version` must not pay for it

    problem = labelselector.label_value_problem(value)
    if problem:
        raise UsageError(f"{flag}: {problem}")
    return value


def selector(value: str) -> str | None:
    """The selector as the server would print it back (`==` as `=`); None when empty."""
    from kubectl_keepalive.kube import labelselector

    return labelselector.canonical(value) or None


def integer(text: str, flag: str, low: int, high: int) -> int:
    """ASCII digits within [low, high]: int() alone takes `٣`, `1_000` and ` 5`."""
    if not _DIGITS.fullmatch(text):
        raise UsageError(f"{flag} takes a whole number from {low} to {high}, not {shown(text)}")
    return durations.check_range(int(text), low, high, flag)


def port(text: str, flag: str = "--port") -> int:
    from kubectl_keepalive.usecases.app import BOOTSTRAP_PORTS  # only diff and enable take --port

    number = integer(text, flag, 1, 65535)
    if number in BOOTSTRAP_PORTS:
        raise UsageError(f"{flag} {number} is an Envoy bootstrap port (admin 15000, health "
                         "15021, metrics 15090), not a gateway listener")
    return number


def verbosity(text: str) -> int:
    return integer(text, "-v", 0, VERBOSITY_MAX)


def request_timeout(text: str) -> float:
    """kubectl's --request-timeout: `0` (no timeout), a bare number of seconds, or a Go
    duration such as `30s`, `1m`, `1.5s`, `500ms`, `1h2m`. Returns seconds; 0 means none."""
    value = text.strip()
    if _DIGITS.fullmatch(value):
        seconds = float(int(value))
    elif value and _GO_PART.sub("", value) == "":
        seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(value))
    else:
        raise UsageError(f"--request-timeout {shown(text)} is not a duration: use 0 (none), "
                         "seconds, or a unit as in 30s, 1m, 500ms")
    if seconds > durations.MAX_SECONDS:
        raise UsageError(f"--request-timeout {shown(text)} is too long")
    return seconds


def header_value(value: str, flag: str) -> str:
    """Tokens and impersonation names travel as HTTP headers: no control characters."""
    if not value or _CONTROL.search(value):
        raise UsageError(f"{flag} must be a non-empty value without control characters")
    return value


def path(value: str, flag: str) -> str:
    """A file or folder path: open() refuses NUL with a ValueError, so say it here."""
    if not value or "\x00" in value:
        raise UsageError(f"{flag} must be a non-empty path without NUL characters")
    return value


def _given(args: argparse.Namespace, name: str) -> object:
    return getattr(args, name, None)


def connection_flags(args: argparse.Namespace) -> ConnectionFlags:
    """kubectl's connection flags as one record, each checked."""
    from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

    return ConnectionFlags(**_connection_values(args))


def _connection_values(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `ConnectionFlags`, each checked."""
    def checked(name: str, flag: str, check: Callable[[str, str], str]) -> str | None:
        value = _given(args, name)
        return None if value is None else check(str(value), flag)

    def text(name: str, flag: str) -> str | None:
        return checked(name, flag, header_value)

    def file(name: str, flag: str) -> str | None:
        return checked(name, flag, path)

    groups: list[str] = [*(getattr(args, "as_group_pre", None) or ()),
                         *(getattr(args, "as_group", None) or ())]
    timeout = _given(args, "request_timeout")
    server = _given(args, "server")
    if server is not None and (not str(server).strip() or _CONTROL.search(str(server))
                               or " " in str(server)):
        raise UsageError(f"--server {shown(str(server))} is not a URL or host:port")
    return dict(
        kubeconfig=file("kubeconfig", "--kubeconfig"),
        context=text("context", "--context"),
        cluster=text("cluster", "--cluster"),
        user=text("user", "--user"),
        server=None if server is None else str(server),
        token=text("token", "--token"),
        as_user=text("as_user", "--as"),
        as_groups=tuple(header_value(str(g), "--as-group") for g in groups),
        as_uid=text("as_uid", "--as-uid"),
        certificate_authority=file("certificate_authority", "--certificate-authority"),
        client_certificate=file("client_certificate", "--client-certificate"),
        client_key=file("client_key", "--client-key"),
        insecure_skip_tls_verify=bool(_given(args, "insecure_skip_tls_verify")),
        tls_server_name=text("tls_server_name", "--tls-server-name"),
        request_timeout=None if timeout is None else request_timeout(str(timeout)),
    )


# Commands that never read a kubeconfig (nor does `status --from-file`): they start without
# loading that module.
_NO_CLUSTER = ("version", "completion")
_DURATION_FLAGS = ("timeout", "duration", "silence", "upload")
_KEEPALIVE_RANGES = {"idle": durations.KEEPIDLE_MAX, "interval": durations.KEEPINTVL_MAX}


def check(args: argparse.Namespace) -> argparse.Namespace:
    """A checked, normalised copy of `args`; raises UsageError on the first bad value."""
    done = argparse.Namespace(**vars(args))
    for name, flag in (("namespace", "--namespace"), ("istio_namespace", "--istio-namespace")):
        if _given(args, name) is not None:
            setattr(done, name, namespace(str(_given(args, name)), flag))
    if _given(args, "selector") is not None:
        done.selector = selector(str(args.selector))
    if _given(args, "gateway") is not None:
        object_name(str(args.gateway), "--gateway")
    if _given(args, "revision") is not None:
        label_value(str(args.revision), "--revision")
    if _given(args, "port"):
        done.port = sorted({port(str(p)) for p in args.port})
    if _given(args, "probes") is not None:
        done.probes = integer(str(args.probes), "--probes", 1, durations.KEEPCNT_MAX)
    for name, high in _KEEPALIVE_RANGES.items():
        if _given(args, name) is not None:
            seconds = durations.parse_duration(str(_given(args, name)), f"--{name}")
            durations.check_range(seconds, 1, high, f"--{name}", "s")
    for name in _DURATION_FLAGS:
        if _given(args, name) is not None:
            durations.parse_duration(str(_given(args, name)), f"--{name}")
    for name, flag in (("from_file", "--from-file"), ("install", "--install")):
        if _given(args, name) is not None:
            path(str(_given(args, name)), flag)
    verbose = _given(args, "verbose")
    done.verbose = verbosity(str(verbose)) if verbose is not None else 0
    # Checked for every command; made a record (kubeconfig's module) only where it is used.
    values = _connection_values(args)
    if _given(args, "command") in _NO_CLUSTER or _given(args, "from_file") is not None:
        done.connection = None
    else:
        from kubectl_keepalive.kube.client.kubeconfig import ConnectionFlags

        done.connection = ConnectionFlags(**values)
    return done
