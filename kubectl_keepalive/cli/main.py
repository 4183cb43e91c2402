"""Command line: parse kubectl-style flags, run a use case, print, choose the exit code.

The only module that prints or exits. Heavy imports (kubernetes, yaml) happen inside commands so
that `--help` and `version` start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NoReturn, cast

from kubectl_keepalive.errors import (
    EXIT_CHANGES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    KeepaliveError,
    UsageError,
)

EXIT_CODES_HELP = """exit codes:
  0    success; for diff: nothing would change; for doctor: nothing fires before --duration;
       for probe: every held connection survived
  1    diff: enable would change something; doctor: a timer cuts the request; enable or
       disable: declined at the prompt
  2    usage error or bad input (nothing was contacted or changed)
  3    cluster or API error (RBAC, unreachable, conflicting EnvoyFilter, rollout failed);
       probe: a target could not be reached
  4    verification failed: the options are not live after applying them; probe: a held
       connection was cut
  5    internal error (a bug): one line; -v shows the traceback
  6    doctor: cannot tell (the balancer's idle timeout, which may cut the request, is unknown)
  130  interrupted
"""

DESCRIPTION = """TCP keepalive on Istio ingress gateway listeners, applied and verified live.

Long requests through an L4 load balancer die when the client's connection sits idle longer
than the balancer's idle timeout. This plugin writes a MERGE EnvoyFilter that sets
SO_KEEPALIVE/TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT on the gateway's downstream listeners,
rolls the gateway, and checks in each pod's Envoy that the options are live.
"""

KubeFactory = Callable[[Any], Any]


class OutputFormats(list):  # type: ignore[type-arg]
    """status's -o: the plain formats (listed for completion) and kubectl's FORMAT=VALUE ones."""

    PLAIN = ("table", "wide", "json", "yaml", "name")
    WITH_VALUE = ("jsonpath=", "jsonpath-file=", "custom-columns=")

    def __init__(self) -> None:
        super().__init__(self.PLAIN + self.WITH_VALUE)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (
            value in self.PLAIN or value.startswith(self.WITH_VALUE))


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: one `error:` line only."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# A flag as a table row: its names and the keywords of `add_argument`.
_Flag = tuple[tuple[str, ...], dict[str, Any]]

# kubectl's global flags. A row's "default" is its value on the top-level parser only: the copy
# on each subcommand has none (SUPPRESS), so a value given before the subcommand survives.
_CLUSTER_FLAGS: tuple[_Flag, ...] = (
    (("-n", "--namespace"),
     {"help": "namespace of the gateways (default: the context's namespace)"}),
    (("--context",), {"help": "kubeconfig context to use"}),
    (("--kubeconfig",), {"help": "path to the kubeconfig file"}),
    (("-l", "--selector"),
     {"help": "label selector for gateway pods, kubectl syntax (default: the well-known gateway "
              "labels of istioctl, Helm and Gateway API installs)"}),
    (("--istio-namespace",),
     {"default": "istio-system",
      "help": "Istio's root namespace, whose EnvoyFilters reach every gateway "
              "(default: istio-system)"}),
    (("-v", "--v"),
     {"dest": "verbose", "nargs": "?", "const": "1", "metavar": "LEVEL", "default": "0",
      "help": "log level (-v 6, -v=6, --v=6, -v6; -v alone is 1): 1 shows the cluster used, "
              "timings, and the traceback of an internal error"}),
)
_CONNECTION_FLAGS: tuple[_Flag, ...] = (
    (("--cluster",), {"help": "kubeconfig cluster to use"}),
    (("--user",), {"help": "kubeconfig user to use"}),
    (("-s", "--server"), {"help": "address and port of the Kubernetes API server"}),
    (("--token",), {"help": "bearer token for the API server"}),
    (("--as",), {"dest": "as_user", "metavar": "USER", "help": "user to impersonate"}),
    (("--as-group",), {"dest": "as_group", "action": "append", "metavar": "GROUP",
                       "help": "group to impersonate; repeatable"}),
    (("--as-uid",), {"metavar": "UID", "help": "UID to impersonate"}),
    (("--certificate-authority",),
     {"metavar": "FILE", "help": "CA certificate file for the API server"}),
    (("--client-certificate",), {"metavar": "FILE", "help": "client certificate file for TLS"}),
    (("--client-key",), {"metavar": "FILE", "help": "client key file for TLS"}),
    (("--insecure-skip-tls-verify",),
     {"action": "store_true", "default": False,
      "help": "do not check the server's certificate (insecure)"}),
    (("--tls-server-name",),
     {"metavar": "NAME", "help": "server name for the server's certificate check"}),
    (("--request-timeout",),
     {"metavar": "DUR", "help": "the whole of each API request (connect, proxy, TLS, answer): "
                                "0 (none), seconds, or 30s, 1m, 500ms"}),
    (("--max-answer-size",),
     {"metavar": "SIZE", "help": "largest answer read, in bytes or with Ki, Mi, Gi (default: "
                                 "64Mi from the API server, 256Mi from an Envoy admin read)"}),
)
# Repeated flags append: on the top-level parser they go to a list of their own, which the
# subcommand's copy would otherwise replace (validation joins the two).
_TOP_LEVEL_DESTS = {"as_group": "as_group_pre"}


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """kubectl's global flags, accepted before or after the subcommand."""
    for title, flags in (("cluster flags (as in kubectl)", _CLUSTER_FLAGS),
                         ("connection flags (as in kubectl)", _CONNECTION_FLAGS)):
        group = parser.add_argument_group(title)
        for names, options in flags:
            if suppress:
                options = {**options, "default": argparse.SUPPRESS}
            elif options.get("dest") in _TOP_LEVEL_DESTS:
                options = {**options, "dest": _TOP_LEVEL_DESTS[options["dest"]]}
            group.add_argument(*names, **options)


_BOOL_FLAGS = ("--insecure-skip-tls-verify",)
_ASCII_DIGITS = frozenset("0123456789")


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """The two kubectl spellings argparse lacks: `-v` alone (level 1, never eating the next
    word, which may be the subcommand) and `--bool-flag=true|false`."""
    words = list(argv)
    done: list[str] = []
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if word in ("-v", "--v") and not (following and set(following) <= _ASCII_DIGITS):
            done.append("--v=1")
            continue
        flag, sep, value = word.partition("=")
        if sep and flag in _BOOL_FLAGS and value.lower() in ("true", "false"):
            if value.lower() == "true":
                done.append(flag)
            continue
        done.append(word)
    return done


def _add_flags(parser: argparse.ArgumentParser, flags: tuple[_Flag, ...]) -> None:
    for names, options in flags:
        parser.add_argument(*names, **options)


# The keepalive settings of diff and enable.
_SETTINGS_FLAGS: tuple[_Flag, ...] = (
    (("--port",),
     {"action": "append", "metavar": "N",
      "help": "gateway port to patch, as Envoy binds it (the Service targetPort, e.g. 8080 not 80 "
              "for istio-ingressgateway); repeatable; default: every TCP listener port found "
              "live"}),
    (("--idle",), {"metavar": "DUR", "help": "idle time before the first probe (default 60s)"}),
    (("--interval",), {"metavar": "DUR", "help": "time between probes (default 10s)"}),
    (("--probes",),
     {"metavar": "N", "help": "unanswered probes before the connection is reset (default 3)"}),
)
# How enable and disable write.
_WRITE_FLAGS: tuple[_Flag, ...] = (
    (("--dry-run",),
     {"nargs": "?", "const": "client", "default": "none", "choices": ["none", "client", "server"],
      "help": "client: print what would be written; server: send the writes with dryRun=All"}),
    (("-o", "--output"),
     {"choices": ["yaml", "json"], "help": "print the EnvoyFilter(s) written (or that would be)"}),
    (("--no-restart",),
     {"action": "store_true", "help": "do not roll the gateway Deployment (connections opened "
                                      "before the change never get keepalive)"}),
    (("--timeout",),
     {"default": "5m", "metavar": "DUR",
      "help": "how long to wait for the rollout and verification (default 5m)"}),
    (("--when-quiet",),
     {"nargs": "?", "const": "0", "metavar": "N",
      "help": "before writing, wait (within --timeout) until every target pod has at most N "
              "requests in flight on the ports to change (default 0); exit 4 and write nothing "
              "if that does not happen"}),
    (("-y", "--yes"), {"action": "store_true", "help": "do not ask for confirmation"}),
)
# status and doctor read each pod's Envoy admin.
_ADMIN_TIMEOUT: tuple[_Flag, ...] = (
    (("--timeout",), {"default": "10s", "metavar": "DUR",
                      "help": "per-pod timeout for reading Envoy admin (default 10s)"}),
)


def build_parser() -> argparse.ArgumentParser:
    from kubectl_keepalive.cli import examples

    parser = _Parser(
        prog="kubectl keepalive",
        allow_abbrev=False,  # as kubectl: `--idl` is not `--idle`
        description=DESCRIPTION.rstrip("\n") + examples.section(examples.PLUGIN),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _globals(parser, suppress=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        # As kubectl's help: what it does, then examples, then the flags.
        shown = examples.COMMANDS.get(name)
        description = help_text + (examples.section(shown) if shown else "")
        sp = subs.add_parser(name, help=help_text, description=description,
                             epilog=EXIT_CODES_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             allow_abbrev=False)
        _globals(sp, suppress=True)
        return sp

    status = sub("status", "show keepalive on every gateway pod's live listeners")
    status.add_argument("-A", "--all-namespaces", action="store_true",
                        help="look in every namespace")
    status.add_argument("-o", "--output", choices=OutputFormats(), default="table",
                        metavar="FORMAT",
                        help="table (default), wide, json, yaml, name, jsonpath=TEMPLATE, "
                             "jsonpath-file=FILE or custom-columns=SPEC, as kubectl's")
    status.add_argument("--no-headers", action="store_true",
                        help="tables and custom columns without their header (and -A's summary)")
    status.add_argument("--sort-by", metavar="FIELD",
                        help="sort the gateways by this JSONPath field of the -o json document's "
                             "gateways, e.g. .name or '{.pods[0].name}'")
    status.add_argument("--allow-missing-template-keys", default="true",
                        choices=["true", "false"],
                        help="-o jsonpath: ignore a missing field (default true, as kubectl)")
    status.add_argument("--from-file", metavar="FILE",
                        help="read an Envoy config_dump or `istioctl proxy-config listener -o "
                             "json` output instead of a cluster ('-' for stdin)")
    _add_flags(status, _ADMIN_TIMEOUT)
    status.add_argument("--sockets", action="store_true",
                        help="also count each pod's established connections per port and those "
                             "with kernel keepalive timers (runs `ss` in istio-proxy; needs "
                             "pods/exec; distroless images have no ss)")

    diff = sub("diff", "show what enable would change; exit 1 when it would change something")
    _add_flags(diff, _SETTINGS_FLAGS)
    diff.add_argument("--disable", action="store_true", help="diff for disable instead")
    diff.add_argument("-o", "--output", choices=["yaml", "json"], default=None,
                      help="print the plan as data: changes, what is in flight on each port, "
                           "and when the push and the rollout cut it")

    enable = sub("enable", "write the keepalive EnvoyFilter, roll the gateway, verify")
    _add_flags(enable, _SETTINGS_FLAGS)
    _add_flags(enable, _WRITE_FLAGS)
    enable.add_argument("--force", action="store_true",
                        help="proceed even when another EnvoyFilter sets keepalive on the port")
    enable.add_argument("--gateway", metavar="NAME",
                        help="offline (--dry-run=client with -l and --port): the gateway "
                             "Deployment's name, which names the filter (default: the `app` "
                             "label of -l)")
    enable.add_argument("--revision", metavar="REV",
                        help="offline: the gateway's istio.io/rev, which labels the filter "
                             "for that revision's istiod (default: none)")

    disable = sub("disable", "remove the managed EnvoyFilter, roll the gateway, verify")
    _add_flags(disable, _WRITE_FLAGS)

    doctor = sub("doctor", "list every timer that can cut a long request through each gateway, "
                           "which fires first, and the fix")
    doctor.add_argument("--duration", required=True, metavar="DUR",
                        help="total time of the request, e.g. 10m")
    doctor.add_argument("--silence", metavar="DUR",
                        help="longest gap without bytes in either direction (default: the "
                             "whole duration)")
    doctor.add_argument("--upload", metavar="DUR", default="0",
                        help="time the client takes to send the request body (default 0)")
    doctor.add_argument("--grpc", action="store_true", help="the request is a gRPC call")
    doctor.add_argument("--all", dest="show_all", action="store_true",
                        help="also list timers that are disabled or do not apply")
    doctor.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _add_flags(doctor, _ADMIN_TIMEOUT)

    rbac = sub("rbac", "print the ClusterRole (or with -n, Roles) and binding a role needs: "
                       "viewer (status, diff, doctor) or operator (also enable, disable)")
    rbac.add_argument("role", choices=["viewer", "operator"])
    rbac.add_argument("--serviceaccount", action="append", metavar="NS:NAME",
                      help="bind this ServiceAccount; repeatable")
    rbac.add_argument("--group", action="append", metavar="NAME",
                      help="bind this group; repeatable")
    rbac.add_argument("--subject-user", action="append", metavar="NAME",
                      help="bind this user (--user is kubectl's kubeconfig flag); repeatable")
    rbac.add_argument("--name", metavar="NAME",
                      help="name of the Role(s) and binding(s) (default: kubectl-keepalive-ROLE)")

    from kubectl_keepalive.cli import probe_command

    probe_command.add_arguments(sub("probe", probe_command.HELP))

    sub("version", "print the plugin version")
    completion = sub("completion", "print the kubectl_complete-keepalive script for kubectl "
                                   ">= 1.26 shell completion")
    completion.add_argument("--install", metavar="DIR",
                            help="write the script as DIR/kubectl_complete-keepalive (a "
                                 "directory on PATH)")
    return parser


class GuardedStream(io.TextIOBase):
    """A text stream that records, instead of raising, that its reader went away.

    Only a BrokenPipeError raised by *this* stream means "the reader closed it" (`status | head`);
    output after that is dropped and the command runs to its own exit code. A BrokenPipeError
    from anywhere else (a port-forward socket) stays an error.
    """

    def __init__(self, inner: IO[str] | None, quiet: bool = False) -> None:
        super().__init__()
        self.inner: Any = inner
        self.quiet = quiet  # stderr: nowhere left to report its own failure
        self.broken = inner is None  # started with the descriptor closed: sys.stdout is None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.inner.write(text)
            except BrokenPipeError:
                self.broken = True
            except (OSError, ValueError):
                if not self.quiet:
                    raise
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.inner.flush()
            except BrokenPipeError:
                self.broken = True
            except (OSError, ValueError):
                if not self.quiet:
                    raise
                self.broken = True

    def isatty(self) -> bool:
        isatty = getattr(self.inner, "isatty", None)
        return bool(isatty and isatty())


def _guard(stream: IO[str] | None, quiet: bool = False) -> IO[str]:
    if isinstance(stream, GuardedStream):
        return cast(IO[str], stream)
    return cast(IO[str], GuardedStream(stream, quiet))  # a TextIOBase is a text stream


def _escaped(text: str) -> str:
    """An error stays one line even when it quotes what the user typed or a server said: line
    breaks and other control characters are shown escaped (`\\n`), as repr() shows them, and
    the whole line is bounded (the pieces from outside in it are cut where they are quoted)."""
    from kubectl_keepalive.terminal import LINE_CUT, safe

    return safe(text, LINE_CUT)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."


def _internal_error(err: IO[str], what: str, exc: BaseException, verbose: int) -> int:
    """The last resort: one line naming what failed; the traceback only with -v."""
    err.write(f"error: {what} failed unexpectedly: {type(exc).__name__}: "
              f"{_one_line(str(exc))} (a bug in kubectl-keepalive"
              f"{'' if verbose else '; -v shows the traceback'})\n")
    if verbose:
        import traceback

        try:
            err.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        except RecursionError:  # a traceback too deep to format: the line above says it all
            err.write("(the traceback is too deep to print)\n")
    return EXIT_INTERNAL


def main(
    argv: Sequence[str],
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    kube_factory: KubeFactory | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    """Run one command; return its exit code. Only this function turns errors into output."""
    out = _guard(stdout if stdout is not None else sys.stdout)
    err = _guard(stderr if stderr is not None else sys.stderr, quiet=True)
    what, verbose = "parsing the command line", 0
    try:
        if argv[:1] == ["__complete"]:  # called by kubectl_complete-keepalive; see completion.py
            from kubectl_keepalive.cli import completion

            what = "completion"
            out.write(completion.render(*completion.complete(list(argv[1:]), build_parser())))
            return EXIT_OK
        parsed = build_parser().parse_args(normalize_argv(argv))
        if parsed.command is None:  # one line, as every usage error: --help has the rest
            raise UsageError("a command is required (status, diff, enable, disable, doctor, "
                             "probe, rbac, version, completion); see `kubectl keepalive --help`")
        from kubectl_keepalive.cli import commands, validation

        what = f"checking the flags of `{parsed.command}`"
        args = validation.check(parsed)  # Complete/Validate: nothing contacted before this
        what, verbose = f"`{args.command}`", args.verbose
        context = commands.Context(
            args=args,
            out=out,
            err=err,
            env=env if env is not None else os.environ,
            kube_factory=kube_factory,
            stdin=stdin if stdin is not None else sys.stdin,
        )
        return commands.run(context)
    except KeepaliveError as exc:
        err.write(f"error: {_escaped(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("error: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last resort: one line, never a bare traceback
        return _internal_error(err, what, exc, verbose)


def entry_point() -> None:
    out = GuardedStream(sys.stdout)
    code = main(sys.argv[1:], cast(IO[str], out))
    if out.broken and sys.stdout is not None:
        # The reader is gone: point stdout at /dev/null so the interpreter's final flush of
        # what is still buffered does not print "Exception ignored ... BrokenPipeError".
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    _exit(code)


def _exit(code: int) -> NoReturn:
    """Exit without the interpreter's teardown of every module (about 15 ms of a 150 ms
    one-pod `status`): output flushed and atexit handlers run first. Only when no other
    non-daemon thread still runs; otherwise the normal way, which waits for it."""
    threading = sys.modules.get("threading")
    if threading is not None and any(
            t is not threading.main_thread() and not t.daemon and t.is_alive()
            for t in threading.enumerate()):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    import atexit

    atexit._run_exitfuncs()
    os._exit(code)


__all__ = ["EXIT_CHANGES", "build_parser", "entry_point", "main"]
