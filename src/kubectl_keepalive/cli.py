"""Command line: parse kubectl-style flags, run a use case, print, choose the exit code.

The only module that prints or exits. Heavy imports (kubernetes, yaml) happen inside commands so
that `--help` and `version` start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NoReturn

from kubectl_keepalive.errors import (
    EXIT_CHANGES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    KeepaliveError,
    UsageError,
)

EXIT_CODES_HELP = """exit codes:
  0    success; for diff: nothing would change; for doctor: nothing fires before --duration
  1    diff: enable would change something; doctor: a timer cuts the request; enable or
       disable: declined at the prompt
  2    usage error or bad input (nothing was contacted or changed)
  3    cluster or API error (RBAC, unreachable, conflicting EnvoyFilter, rollout failed)
  4    verification failed: the options are not live after applying them
  130  interrupted
"""

DESCRIPTION = """TCP keepalive on Istio ingress gateway listeners, applied and verified live.

Long requests through an L4 load balancer die when the client's connection sits idle longer
than the balancer's idle timeout. This plugin writes a MERGE EnvoyFilter that sets
SO_KEEPALIVE/TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT on the gateway's downstream listeners,
rolls the gateway, and checks in each pod's Envoy that the options are live.
"""

KubeFactory = Callable[[Any], Any]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: one `error:` line only."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("cluster flags (as in kubectl)")
    group.add_argument("-n", "--namespace", default=default,
                       help="namespace of the gateways (default: the context's namespace)")
    group.add_argument("--context", default=default, help="kubeconfig context to use")
    group.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file")
    group.add_argument("-l", "--selector", default=default,
                       help="label selector for gateway pods (default: the well-known gateway "
                            "labels of istioctl, Helm and Gateway API installs)")
    group.add_argument("--istio-namespace", default=argparse.SUPPRESS if suppress
                       else "istio-system",
                       help="Istio's root namespace, whose EnvoyFilters reach every gateway "
                            "(default: istio-system)")
    group.add_argument("-v", "--v", dest="verbose", type=int, nargs="?", const=1,
                       default=argparse.SUPPRESS if suppress else 0,
                       help="log level: 1 shows the cluster used and timings")


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, action="append", metavar="N",
                        help="gateway port to patch, as Envoy binds it (the Service targetPort, "
                             "e.g. 8080 not 80 for istio-ingressgateway); repeatable; default: "
                             "every TCP listener port found live")
    parser.add_argument("--idle", default=None, metavar="DUR",
                        help="idle time before the first probe (default 60s)")
    parser.add_argument("--interval", default=None, metavar="DUR",
                        help="time between probes (default 10s)")
    parser.add_argument("--probes", type=int, default=None, metavar="N",
                        help="unanswered probes before the connection is reset (default 3)")


def _write_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", nargs="?", const="client", default="none",
                        choices=["none", "client", "server"],
                        help="client: print what would be written; server: send the writes "
                             "with dryRun=All")
    parser.add_argument("-o", "--output", choices=["yaml", "json"], default=None,
                        help="print the EnvoyFilter(s) written (or that would be)")
    parser.add_argument("--no-restart", action="store_true",
                        help="do not roll the gateway Deployment (connections opened before "
                             "the change never get keepalive)")
    parser.add_argument("--timeout", default="5m", metavar="DUR",
                        help="how long to wait for the rollout and verification (default 5m)")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kubectl keepalive",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _globals(parser, suppress=False)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = subs.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        _globals(sp, suppress=True)
        return sp

    status = sub("status", "show keepalive on every gateway pod's live listeners")
    status.add_argument("-A", "--all-namespaces", action="store_true",
                        help="look in every namespace")
    status.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"],
                        default="table")
    status.add_argument("--from-file", metavar="FILE",
                        help="read an Envoy config_dump or `istioctl proxy-config listener -o "
                             "json` output instead of a cluster ('-' for stdin)")
    status.add_argument("--timeout", default="10s", metavar="DUR",
                        help="per-pod timeout for reading Envoy admin (default 10s)")
    status.add_argument("--sockets", action="store_true",
                        help="also count each pod's established connections per port and those "
                             "with kernel keepalive timers (runs `ss` in istio-proxy; needs "
                             "pods/exec; distroless images have no ss)")

    diff = sub("diff", "show what enable would change; exit 1 when it would change something")
    _settings_flags(diff)
    diff.add_argument("--disable", action="store_true", help="diff for disable instead")

    enable = sub("enable", "write the keepalive EnvoyFilter, roll the gateway, verify")
    _settings_flags(enable)
    _write_flags(enable)
    enable.add_argument("--force", action="store_true",
                        help="proceed even when another EnvoyFilter sets keepalive on the port")
    enable.add_argument("--gateway", metavar="NAME",
                        help="offline (--dry-run=client with -l and --port): the gateway "
                             "Deployment's name, which names the filter (default: the `app` "
                             "label of -l)")
    enable.add_argument("--revision", metavar="REV",
                        help="offline: the gateway's istio.io/rev (default: from -l)")

    disable = sub("disable", "remove the managed EnvoyFilter, roll the gateway, verify")
    _write_flags(disable)

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
    doctor.add_argument("--timeout", default="10s", metavar="DUR",
                        help="per-pod timeout for reading Envoy admin (default 10s)")

    sub("version", "print the plugin version")
    completion = sub("completion", "print the kubectl_complete-keepalive script for kubectl "
                                   ">= 1.26 shell completion")
    completion.add_argument("--install", metavar="DIR",
                            help="write the script as DIR/kubectl_complete-keepalive (a "
                                 "directory on PATH)")
    return parser


def main(
    argv: Sequence[str],
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    kube_factory: KubeFactory | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    """Run one command; return its exit code. Only this function turns errors into output."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if argv[:1] == ["__complete"]:  # called by kubectl_complete-keepalive; see completion.py
        from kubectl_keepalive import completion

        out.write(completion.render(*completion.complete(list(argv[1:]), build_parser())))
        return EXIT_OK
    try:
        args = build_parser().parse_args(list(argv))
        if args.command is None:
            build_parser().print_help(out)
            return EXIT_USAGE
        from kubectl_keepalive import commands

        context = commands.Context(
            args=args,
            out=out,
            err=err,
            env=env if env is not None else os.environ,
            kube_factory=kube_factory,
            stdin=stdin or sys.stdin,
        )
        return commands.run(context)
    except KeepaliveError as exc:
        err.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("error: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def entry_point() -> None:
    sys.exit(main(sys.argv[1:]))


__all__ = ["EXIT_CHANGES", "build_parser", "entry_point", "main"]
