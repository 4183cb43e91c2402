"""`kubectl keepalive probe`: its flags, their checks, and the wait with its progress line.

Kept apart from `commands` so that the other commands load none of it; `main` adds the flags
and `commands.run` hands the command here.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from kubectl_keepalive import durations
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.terminal import safe

if TYPE_CHECKING:
    from kubectl_keepalive.cli.commands import Context
    from kubectl_keepalive.usecases import probe

HELP = ("hold real connections idle through the load balancer for --hold, then ask again on "
        "each: survived, reset, closed or no answer, and the gateway's keepalive probes seen")
TERMINAL_EVERY = 0.5  # seconds between redraws of the progress line on a terminal
PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", metavar="URL",
                        help="probe http(s)://HOST[:PORT]/PATH directly; needs no cluster "
                             "access (default: the gateways' LoadBalancer addresses)")
    parser.add_argument("--gateway", metavar="NAME",
                        help="only the gateway of this name (its Deployment's), among those "
                             "-n and -l find")
    parser.add_argument("--host", metavar="NAME",
                        help="Host header and TLS server name (SNI) to send; a gateway that "
                             "routes by SNI drops a handshake without one")
    parser.add_argument("--hold", metavar="DUR[..DUR]",
                        help="silence between the two requests, or A..B spread over "
                             "--connections (default: the balancer's idle timeout found as "
                             "doctor finds it, plus a margin; required when it is unknown)")
    parser.add_argument("--connections", default="1", metavar="N",
                        help="connections per target, their holds spread from A to B "
                             "(default 1)")
    parser.add_argument("--answer-timeout", default="10s", metavar="DUR",
                        help="how long to wait for each answer (default 10s)")
    parser.add_argument("--connect-timeout", default="10s", metavar="DUR",
                        help="how long to wait for the connection, proxy and TLS handshake "
                             "(default 10s)")
    parser.add_argument("--insecure-target", action="store_true",
                        help="do not check the target's certificate (insecure); "
                             "--insecure-skip-tls-verify is the API server's, as in kubectl")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    parser.add_argument("--timeout", default="10s", metavar="DUR",
                        help="per-pod timeout for reading Envoy admin (default 10s)")


def suggestion(args: argparse.Namespace, hold_known: bool = True) -> str:
    """The probe command that proves from the users' side what `doctor` or `enable` found:
    the same gateways (context, namespace, selector); `--hold DUR` when no balancer tells it."""
    import shlex  # here: every command's parser loads this module, few need shlex

    words = ["kubectl", "keepalive", "probe"]
    for flag, name in (("--context", "context"), ("-n", "namespace"), ("-l", "selector")):
        value = getattr(args, name, None)
        if value:
            words += [flag, shlex.quote(str(value))]
    if not hold_known:
        words += ["--hold", "DUR"]
    return " ".join(words)


def request_from(args: argparse.Namespace) -> probe.Request:
    """Every flag checked before anything is contacted."""
    from kubectl_keepalive.cli import validation
    from kubectl_keepalive.probe import targets
    from kubectl_keepalive.usecases import probe

    connections = validation.integer(str(args.connections), "--connections", 1,
                                     targets.MAX_CONNECTIONS)
    hold = targets.parse_hold(args.hold) if args.hold is not None else None
    if hold is not None and hold[0] != hold[1] and connections < 2:
        raise UsageError("--hold A..B spreads holds over connections: give --connections 2 or "
                         "more")
    answer = durations.check_range(
        durations.parse_duration(args.answer_timeout, "--answer-timeout"), 1, 3600,
        "--answer-timeout", "s")
    connect = durations.check_range(
        durations.parse_duration(args.connect_timeout, "--connect-timeout"), 1, 3600,
        "--connect-timeout", "s")
    if args.host is not None:
        targets.check_host_name(args.host)
    if args.url is not None:
        targets.from_url(args.url, args.host)
        if args.gateway is not None:
            raise UsageError("--gateway chooses among the cluster's gateways: --url needs none")
        if getattr(args, "insecure_skip_tls_verify", False):
            # kubectl's flag is the API server's, which --url never contacts: taking it for
            # the target here would give one flag two meanings.
            raise UsageError("--insecure-skip-tls-verify is the API server's, which --url does "
                             "not contact: --insecure-target skips the target's certificate "
                             "check")
    return probe.Request(url=args.url, host=args.host, hold=hold, connections=connections,
                         answer_timeout=float(answer), connect_timeout=float(connect),
                         insecure=bool(args.insecure_target),
                         gateway=args.gateway)


def cmd_probe(ctx: Context) -> int:
    from kubectl_keepalive.cli import probe_render, render
    from kubectl_keepalive.cli.commands import connect
    from kubectl_keepalive.usecases import app, probe

    args = ctx.args
    request = request_from(args)
    notes: list[str] = []
    if request.url is not None:
        planned, notes = probe.plan_url(request, ctx.env)
    else:
        timeout = durations.parse_duration(args.timeout, "--timeout")
        cluster, scope = connect(ctx)
        scope = app.Scope(scope.namespace, scope.selector, scope.root_namespace,
                          scope.parallel, float(max(1, timeout)))
        planned, notes = probe.plan_cluster(cluster, scope, request, ctx.env)
        if not planned:
            for line in notes:
                ctx.note(f"note: {safe(line, 1000)}")
            raise UsageError("nothing to probe: no gateway has an external address; give --url")
    for line in probe_render.plan_lines(planned):
        ctx.note(line)
    running = probe.start(planned, request)
    _wait(ctx, running)
    report = running.report(notes)
    if args.output == "json":
        ctx.out.write(render.to_json(probe_render.document(report)))
    elif args.output == "yaml":
        ctx.out.write(render.to_yaml(probe_render.document(report)))
    else:
        ctx.out.write(probe_render.table(report))
    for line in probe_render.details(report):
        ctx.note(line)
    for line in report.notes:
        ctx.note(f"note: {safe(line, 1000)}")
    return report.exit_code


def _wait(ctx: Context, running: probe.Running) -> None:
    """Wait for every probe; a redrawn line on a terminal, a plain line now and then else."""
    from kubectl_keepalive.cli import probe_render
    from kubectl_keepalive.cli.commands import _has_terminal

    terminal = _has_terminal(ctx.err)
    every = TERMINAL_EVERY if terminal else PLAIN_EVERY
    start = time.monotonic()
    last = ""
    try:
        while not running.wait(every):
            line = probe_render.progress_line(running.progress, time.monotonic() - start)
            if terminal:
                ctx.err.write("\r" + line.ljust(len(last)))
                ctx.err.flush()
            elif line != last:
                ctx.note(line)
            last = line
    finally:
        running.stop.set()  # an interrupt ends the holds at once
        if terminal and last:
            ctx.err.write("\r" + " " * len(last) + "\r")
            ctx.err.flush()
