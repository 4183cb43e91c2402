"""The subcommands: turn parsed flags into use-case calls and reports into output.

Called only from `cli.main`, after `validation.check` has checked and normalised every flag
(ports and probes are ints, the selector canonical, `connection` a ConnectionFlags); `cli.main`
maps raised errors to `error:` lines and exit codes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from kubectl_keepalive import __version__, durations
from kubectl_keepalive.errors import EXIT_CHANGES, EXIT_CLUSTER, EXIT_OK, UsageError
from kubectl_keepalive.terminal import LINE_CUT, safe

SENTENCE_CUT = 1000  # a note or problem quoting the cluster: the pieces in it are cut already

# The use cases are imported by the commands that run them: `version` and `completion` start
# without loading them (start-up time, see benchmarks/startup.py).
if TYPE_CHECKING:
    from kubectl_keepalive.model import Gateway, KeepaliveSettings
    from kubectl_keepalive.usecases import app, drainplan, planreads

EXIT_ABORTED = 1


class Context:
    """What a command gets. A plain class: `dataclasses` alone costs `version` milliseconds."""

    def __init__(self, args: argparse.Namespace, out: IO[str], err: IO[str],
                 env: Mapping[str, str], kube_factory: Callable[[Any], Any] | None,
                 stdin: IO[str] | None) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.env = env
        self.kube_factory = kube_factory
        self.stdin = stdin  # None when the process started with stdin closed

    def note(self, text: str) -> None:
        # Every line to stderr, escaped: a piece from the cluster missed upstream still cannot
        # steer the terminal or break the line.
        self.err.write(safe(text, LINE_CUT) + "\n")
        self.err.flush()


def run(ctx: Context) -> int:
    handlers: dict[str, Callable[[Context], int]] = {
        "status": cmd_status,
        "diff": cmd_diff,
        "enable": cmd_enable,
        "disable": cmd_disable,
        "doctor": cmd_doctor,
        "probe": cmd_probe,
        "rbac": cmd_rbac,
        "version": cmd_version,
        "completion": cmd_completion,
    }
    max_answer_from(ctx.args)  # checked before anything is contacted
    return handlers[ctx.args.command](ctx)


# -- flags ------------------------------------------------------------------------------------


def settings_from(args: argparse.Namespace) -> KeepaliveSettings:
    """The settings the flags give, defaults for the rest (values already checked)."""
    from kubectl_keepalive.model import KeepaliveSettings
    from kubectl_keepalive.usecases import app

    default = app.DEFAULT_SETTINGS
    idle = default.idle if args.idle is None else durations.parse_duration(args.idle, "--idle")
    interval = (default.interval if args.interval is None
                else durations.parse_duration(args.interval, "--interval"))
    probes = default.probes if args.probes is None else args.probes
    return KeepaliveSettings(
        idle=durations.check_range(idle, 1, durations.KEEPIDLE_MAX, "--idle", "s"),
        interval=durations.check_range(interval, 1, durations.KEEPINTVL_MAX, "--interval", "s"),
        probes=durations.check_range(probes, 1, durations.KEEPCNT_MAX, "--probes"),
    )


def ports_from(args: argparse.Namespace) -> list[int] | None:
    """The --port values, checked, sorted and unique by `validation.check`."""
    return [int(p) for p in args.port] if args.port else None


def settings_given(args: argparse.Namespace) -> bool:
    return not (args.idle is None and args.interval is None and args.probes is None)


def timeout_from(args: argparse.Namespace) -> int:
    return durations.parse_duration(args.timeout, "--timeout")


def when_quiet_from(args: argparse.Namespace) -> int | None:
    """--when-quiet[=N]: the most requests in flight per pod to apply at; None: do not wait."""
    value = _get(args, "when_quiet")
    if value is None:
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise UsageError(f"--when-quiet {text[:20]!r} is not a whole number of requests "
                         "(0 or more)")
    return int(text)


_SIZE = re.compile(r"([0-9]{1,15})(Ki|Mi|Gi)?")
_SIZE_UNITS = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
MAX_ANSWER_RANGE = (1 << 10, 64 << 30)


def max_answer_from(args: argparse.Namespace) -> int | None:
    """--max-answer-size: bytes, or a whole number with Ki, Mi or Gi; None: the defaults."""
    value = _get(args, "max_answer_size")
    if value is None:
        return None
    text = str(value).strip()
    found = _SIZE.fullmatch(text)
    if not text.isascii() or found is None:
        raise UsageError(f"--max-answer-size {safe(text[:20])!r} is not a size: bytes, or a "
                         "whole number with Ki, Mi or Gi (e.g. 512Mi)")
    size = int(found[1]) * _SIZE_UNITS[found[2]]
    low, high = MAX_ANSWER_RANGE
    if not low <= size <= high:
        raise UsageError(f"--max-answer-size {text} is out of range: 1Ki to 64Gi")
    return size


def _get(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def scope_from(ctx: Context, resolved_namespace: str | None) -> app.Scope:
    from kubectl_keepalive.usecases import app

    args = ctx.args
    return app.Scope(
        namespace=resolved_namespace,
        selector=_get(args, "selector"),
        root_namespace=_get(args, "istio_namespace") or app.DEFAULT_ROOT_NAMESPACE,
    )


def connect(ctx: Context, all_namespaces: bool = False) -> tuple[Any, app.Scope]:
    """Resolve kubeconfig the kubectl way and build the cluster adapter."""
    from kubectl_keepalive.kube.client import kubeconfig

    args = ctx.args
    flags = _get(args, "connection") or kubeconfig.ConnectionFlags(
        kubeconfig=_get(args, "kubeconfig"), context=_get(args, "context"))
    resolved = kubeconfig.resolve(flags.kubeconfig, flags.context, _get(args, "namespace"),
                                  ctx.env, flags=flags)
    namespace = None if all_namespaces else resolved.namespace
    if ctx.kube_factory is not None:
        cluster = ctx.kube_factory(resolved)
    else:
        from kubectl_keepalive.kube.api import KubeCluster

        cluster = KubeCluster(resolved, max_answer=max_answer_from(args))
    if (_get(args, "verbose") or 0) >= 1:
        ctx.note(f"using {cluster.describe()}, namespace {namespace or '<all>'}")
    return cluster, scope_from(ctx, namespace)


# -- status -----------------------------------------------------------------------------------


def cmd_status(ctx: Context) -> int:
    from kubectl_keepalive.cli import render
    from kubectl_keepalive.usecases import app

    args = ctx.args
    if args.from_file:
        if args.all_namespaces or args.sockets:
            raise UsageError("--from-file reads one pod's config: it takes no -A or --sockets")
        text = _read_input(args.from_file, ctx)  # its errors name the file already
        try:
            report = app.status_from_file(text)
        except UsageError as exc:
            name = "stdin" if args.from_file == "-" else args.from_file
            raise UsageError(f"{name}: {exc}") from None
    else:
        timeout = durations.parse_duration(args.timeout, "--timeout")
        _check_output(ctx)
        cluster, scope = connect(ctx, all_namespaces=args.all_namespaces)
        scope = app.Scope(scope.namespace, scope.selector, scope.root_namespace,
                          scope.parallel, float(max(1, timeout)))
        report = app.status(cluster, scope, with_sockets=args.sockets)
        if (_get(args, "verbose") or 0) >= 1:
            ctx.note(f"{getattr(cluster, 'requests', '?')} API requests")
        if not report.gateways:
            where = f"in namespace {scope.namespace}" if scope.namespace else "in any namespace"
            ctx.note(f"No Istio ingress gateways found {where}.")
            return EXIT_OK
    _print_status(ctx, report)
    for line in render.status_notes(report):
        ctx.note(f"note: {line}")
    if report.failed_pods:
        ctx.note(f"error: {report.failed_pods} pod(s) could not be read (see the table)")
        return EXIT_CLUSTER
    return EXIT_OK


def _print_status(ctx: Context, report: app.StatusReport) -> None:
    from kubectl_keepalive.cli import columns, gateway_table, jsonpath, render
    from kubectl_keepalive.usecases import app

    args = ctx.args
    output = args.output
    try:
        document = render.status_document(report)
        if _get(args, "sort_by"):
            items = document["gateways"]
            position = {id(item): i for i, item in enumerate(items)}
            items = columns.sort_items(items, args.sort_by)
            document["gateways"] = items
            report = app.StatusReport(tuple(report.gateways[position[id(it)]] for it in items),
                                      report.notices)
        if output == "json":
            ctx.out.write(render.to_json(document))
        elif output == "yaml":
            ctx.out.write(render.to_yaml(document))
        elif output == "name":
            for gw in report.gateways:
                if gw.gateway.name:
                    ctx.out.write(f"{safe(gw.gateway.namespace)}/{safe(gw.gateway.name)}\n")
        elif output.startswith(("jsonpath=", "jsonpath-file=")):
            allow = _get(args, "allow_missing_template_keys", "true") == "true"
            ctx.out.write(jsonpath.execute(_template(output, ctx), document, allow))
        elif output.startswith("custom-columns="):
            ctx.out.write(columns.custom_columns(output.partition("=")[2], document["gateways"],
                                                 _get(args, "no_headers", False)))
        elif output == "wide":
            ctx.out.write(render.status_table(report, wide=True,
                                              no_headers=_get(args, "no_headers", False)))
        else:
            ctx.out.write(gateway_table.table(report, all_namespaces=args.all_namespaces,
                                              no_headers=_get(args, "no_headers", False)))
    except jsonpath.JSONPathError as exc:
        raise UsageError(str(exc)) from None


def _check_output(ctx: Context) -> None:
    """kubectl builds its printer before it asks the server: a template, column spec or
    --sort-by it cannot parse is exit 2 with nothing contacted. (-o jsonpath-file= is read
    once, when printing: it may be stdin.)"""
    from kubectl_keepalive.cli import columns, jsonpath

    output = ctx.args.output or ""
    try:
        if output.startswith("jsonpath="):
            jsonpath.compile_template(_template(output, ctx))
        elif output.startswith("custom-columns="):
            for _, field in columns.parse_spec(output.partition("=")[2]):
                jsonpath.parse(field)
        sort_by = _get(ctx.args, "sort_by")
        if sort_by:
            jsonpath.parse(columns.relaxed(sort_by))
    except jsonpath.JSONPathError as exc:
        raise UsageError(str(exc)) from None


def _template(output: str, ctx: Context) -> str:
    """-o jsonpath=TEMPLATE, or the template read from -o jsonpath-file=FILE."""
    kind, _, value = output.partition("=")
    if kind == "jsonpath":
        if not value:
            raise UsageError("template format specified but no template given")
        return value
    return _read_input(value, ctx)


def _read_input(path: str, ctx: Context) -> str:
    """The whole document as text: read once, never held as bytes and str at the same time."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            if ctx.stdin is None:
                raise UsageError("--from-file -: stdin is closed")
            return ctx.stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name} is not UTF-8 JSON: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    except ValueError:  # the stream was closed under us
        raise UsageError(f"cannot read {name}: it is closed") from None


# -- diff / enable / disable ------------------------------------------------------------------


def cmd_diff(ctx: Context) -> int:
    from kubectl_keepalive.cli import render
    from kubectl_keepalive.usecases import app

    args = ctx.args
    if args.disable:
        cluster, scope = connect(ctx)
        plan = app.plan_disable(cluster, scope)
    else:
        ports = ports_from(args)
        cluster, scope = connect(ctx)
        plan = app.plan_enable(cluster, scope, wanted_settings(ctx, cluster), ports)
    _notices(ctx, plan)
    output = _get(args, "output")
    if output == "json":
        ctx.out.write(render.to_json(render.plan_document(plan)))
    elif output == "yaml":
        ctx.out.write(render.to_yaml(render.plan_document(plan)))
    else:
        verbose = (_get(args, "verbose") or 0) >= 1
        ctx.out.write(render.plan_text(plan, render.to_yaml, verbose=verbose))
    return EXIT_CHANGES if plan.changes else EXIT_OK


def cmd_enable(ctx: Context) -> int:
    from kubectl_keepalive.usecases import app, applying

    args = ctx.args
    ports = ports_from(args)
    timeout = timeout_from(args)
    when_quiet_from(args)  # checked before anything is contacted
    if args.dry_run == "client" and _offline_possible(args, ports):
        return _render_offline(ctx, settings_from(args), ports or [])
    _require_confirmation_possible(ctx)
    cluster, scope = connect(ctx)
    plan = app.plan_enable(cluster, scope, wanted_settings(ctx, cluster), ports)
    _notices(ctx, plan)
    applying.check_foreign(plan, args.force)
    return _carry_out(ctx, cluster, scope, plan, timeout)


def wanted_settings(ctx: Context, cluster: Any) -> KeepaliveSettings | planreads.SettingsFor:
    """What enable writes and diff compares against: one function, so that `diff` after
    `enable -y` with the same flags finds nothing to change (balancer-aware defaults too:
    chosen by the plan once it has found the gateways)."""
    settings = settings_from(ctx.args)
    if settings_given(ctx.args):
        return settings
    return lambda gateways: _recommended(ctx, cluster, gateways, settings)


def _recommended(ctx: Context, cluster: Any, gateways: Sequence[Gateway],
                 default: KeepaliveSettings) -> KeepaliveSettings:
    """Without --idle, stay safely below the balancer's idle timeout when the Service tells it."""
    from kubectl_keepalive.usecases import fronts

    advice = fronts.recommend(cluster, gateways)
    if advice is None:
        return default
    ctx.note(f"note: using idle={advice.settings.idle}s interval={advice.settings.interval}s "
             f"probes={advice.settings.probes}: {advice.reason} (--idle overrides)")
    return advice.settings


def cmd_doctor(ctx: Context) -> int:
    from kubectl_keepalive.cli import render
    from kubectl_keepalive.doctor import analysis
    from kubectl_keepalive.doctor import render as doctor_render
    from kubectl_keepalive.usecases import app, diagnose

    args = ctx.args
    duration = durations.parse_duration(args.duration, "--duration")
    silence = (durations.parse_duration(args.silence, "--silence")
               if args.silence is not None else None)
    upload = durations.parse_duration(args.upload, "--upload")
    profile = analysis.Profile(float(duration), None if silence is None else float(silence),
                               float(upload), grpc=args.grpc)
    timeout = durations.parse_duration(args.timeout, "--timeout")
    cluster, scope = connect(ctx)
    scope = app.Scope(scope.namespace, scope.selector, scope.root_namespace, scope.parallel,
                      float(max(1, timeout)))
    result = diagnose.diagnose(cluster, scope, profile)
    if args.output == "json":
        ctx.out.write(render.to_json({"gateways": _doctor_document(result, doctor_render)}))
    else:
        for item in result.ports:
            gw = item.gateway
            front = (f"Service {item.front.service} port {item.front.port}"
                     if item.front.service else "no Service found")
            ctx.out.write(f"gateway {safe(gw.namespace)}/{safe(gw.name)}, {safe(front)}\n")
            ctx.out.write(doctor_render.table(item.report, show_all=args.show_all) + "\n")
    for line in result.notes:
        ctx.note(f"note: {safe(line, SENTENCE_CUT)}")
    for problem in result.problems:
        ctx.note(f"error: {safe(problem, SENTENCE_CUT)}")
    if result.ports:
        _name_the_probe(ctx, all(p.front.balancer.idle_timeout_s for p in result.ports))
    if result.problems:
        return EXIT_CLUSTER
    return result.exit_code


def _name_the_probe(ctx: Context, hold_known: bool = True) -> None:
    """doctor's and enable's last line: the command that proves the result from where the
    users are."""
    from kubectl_keepalive.cli import probe_command

    ctx.note("prove it from the clients' side: "
             f"{safe(probe_command.suggestion(ctx.args, hold_known), SENTENCE_CUT)}")


def cmd_probe(ctx: Context) -> int:
    from kubectl_keepalive.cli import probe_command

    return probe_command.cmd_probe(ctx)


def _doctor_document(result: Any, doctor_render: Any) -> list[dict[str, Any]]:
    gateways: dict[tuple[str, str], dict[str, Any]] = {}
    for item in result.ports:
        key = (item.gateway.namespace, item.gateway.name)
        entry = gateways.setdefault(key, {"namespace": key[0], "name": key[1], "ports": []})
        entry["ports"].append({"service": item.front.service, "service_port": item.front.port,
                               "target_port": item.front.target_port,
                               **doctor_render.document(item.report)})
    return list(gateways.values())


def cmd_disable(ctx: Context) -> int:
    from kubectl_keepalive.usecases import app

    args = ctx.args
    timeout = timeout_from(args)
    when_quiet_from(args)
    _require_confirmation_possible(ctx)
    cluster, scope = connect(ctx)
    plan = app.plan_disable(cluster, scope)
    _notices(ctx, plan)
    return _carry_out(ctx, cluster, scope, plan, timeout)


def _notices(ctx: Context, plan: app.Plan) -> None:
    for line in plan.notices:
        ctx.note(f"note: {safe(line, SENTENCE_CUT)}")


def _carry_out(ctx: Context, cluster: Any, scope: app.Scope, plan: app.Plan,
               timeout: int) -> int:
    from kubectl_keepalive.cli import render
    from kubectl_keepalive.usecases import applying, drainplan

    args = ctx.args
    # The YAML diff is `diff`'s job; here it only shows with -v.
    verbose = (_get(args, "verbose") or 0) >= 1
    ctx.err.write(render.plan_text(plan, render.to_yaml, with_yaml=verbose, verbose=verbose))
    if not plan.changes:
        ctx.note("nothing to do: the live gateways already match")
        _print_filters(ctx, plan)
        if plan.settings is not None:
            _name_the_probe(ctx)
        return EXIT_OK
    # As kubectl does: with -o the documents alone go to stdout, progress lines to stderr.
    lines = ctx.err if args.output else ctx.out
    if args.dry_run == "client":
        for gp in plan.gateways:
            if gp.writes:
                lines.write(f"envoyfilter.networking.istio.io/{_filter_name(gp)} "
                            f"{_past(gp.action)} (dry run)\n")
        _print_filters(ctx, plan)
        return EXIT_OK
    if not args.yes and args.dry_run == "none" and not _confirm(ctx, plan):
        ctx.note("aborted: nothing was changed")
        return EXIT_ABORTED
    left = float(timeout)
    quiet = when_quiet_from(args)
    # Long waits: on a terminal one line redrawn in place, otherwise plain lines.
    from kubectl_keepalive.cli.progress import Progress

    if quiet is not None and args.dry_run == "none":
        # After the yes, right before the write: the quiet moment is used at once.
        with Progress(ctx.err, left) as waiting:
            waited = drainplan.wait_quiet(cluster, _quiet_targets(plan), quiet, left,
                                          waiting.report)
        left = max(1.0, left - waited)
        ctx.note(f"quiet: at most {quiet} request(s) in flight on the ports to change; "
                 "applying now")
    with Progress(ctx.err, left) as waiting:
        result = applying.apply(
            cluster, plan, scope,
            restart=not args.no_restart,
            timeout=left,
            report=waiting.report,
            dry_run=args.dry_run == "server",
        )
    for line in result.done:
        lines.write(safe(line, LINE_CUT) + "\n")
    for line in result.verified:
        lines.write(f"verified: {safe(line, LINE_CUT)}\n")
    if args.no_restart and plan.settings is not None and any(g.writes for g in plan.gateways):
        ctx.note("note: not restarted: connections accepted before the change keep running "
                 "without keepalive until they close")
    _print_filters(ctx, plan)
    if plan.settings is not None and args.dry_run == "none":
        _name_the_probe(ctx)
    return EXIT_OK


def _quiet_targets(plan: app.Plan) -> list[tuple[drainplan.Target, list[int]]]:
    from kubectl_keepalive.usecases import app

    return [(target, app.drain_ports(gp)) for gp in plan.gateways if gp.changes
            for target in gp.targets if app.drain_ports(gp)]


def _print_filters(ctx: Context, plan: app.Plan) -> None:
    from kubectl_keepalive.cli import render

    output = ctx.args.output
    docs = [gp.wanted for gp in plan.gateways if gp.wanted is not None]
    if not output or not docs:
        return
    if output == "json":
        document: Any = docs[0] if len(docs) == 1 else {"apiVersion": "v1", "kind": "List",
                                                         "items": docs}
        ctx.out.write(render.to_json(document))
    else:
        ctx.out.write(render.yaml_stream(docs))


def _filter_name(gp: app.GatewayPlan) -> str:
    from kubectl_keepalive.istio import envoyfilter

    return envoyfilter.managed_name(gp.gateway.name)


def _past(action: str) -> str:
    return {"create": "created", "update": "configured", "delete": "deleted"}.get(action, action)


def _has_terminal(stream: IO[str] | None) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # closed under us
        return False


def _require_confirmation_possible(ctx: Context) -> None:
    """A write needs a yes: from -y, or from a person at a terminal. Checked before contacting
    the cluster, so a script that forgot -y stops at once and changes nothing."""
    args = ctx.args
    if args.yes or args.dry_run != "none" or _has_terminal(ctx.stdin):
        return
    raise UsageError(f"{args.command} changes the cluster and there is no terminal to confirm "
                     "on: pass -y to apply without a prompt")


def _confirm(ctx: Context, plan: app.Plan) -> bool:
    """Ask on the terminal (`_require_confirmation_possible` made sure there is one)."""
    ports = ", ".join(str(p) for p in sorted({c.port for g in plan.gateways for c in g.ports}))
    # Two short lines: Envoy replaces the listeners on these ports (requests in flight are cut
    # when their drain time runs out, Envoy >= 1.25) and the rollout ends long requests too.
    ctx.note(f"warning: requests in flight on port(s) {ports or '-'} are cut as said above;")
    ctx.note("  connections opened before the change never get keepalive (--when-quiet waits)")
    if ctx.stdin is None or not _has_terminal(ctx.stdin):
        return False
    ctx.err.write("Continue? [y/N] ")
    ctx.err.flush()
    answer = ctx.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _offline_possible(args: argparse.Namespace, ports: list[int] | None) -> bool:
    return bool(_get(args, "namespace") and _get(args, "selector") and ports)


def _render_offline(ctx: Context, settings: KeepaliveSettings, ports: list[int]) -> int:
    """`--dry-run=client -n NS -l k=v --port N`: the EnvoyFilter, with no cluster at all."""
    from kubectl_keepalive.cli import render
    from kubectl_keepalive.istio import envoyfilter, own_selector
    from kubectl_keepalive.kube import labelselector
    from kubectl_keepalive.model import Gateway

    args = ctx.args
    labels = labelselector.equality_labels(args.selector)
    if not labels:
        raise UsageError("offline rendering needs -l with key=value labels (the gateway "
                         "Deployment's selector)")
    # They become the workloadSelector as given: no label a pod gets from its controller or
    # revision (online, the Deployment's own selector is used whatever -l says).
    own_selector.refuse_controller_labels(labels)
    name = args.gateway or labels.get("app") or labels.get(
        "gateway.networking.k8s.io/gateway-name") or next(iter(labels.values()))
    revision = args.revision
    if revision == "default":
        revision = None  # as online: the default revision's istiod takes unlabelled config
    gateway = Gateway(args.namespace, name, labels, revision)
    document = envoyfilter.for_gateway(
        gateway, [envoyfilter.PortTarget(p) for p in ports], settings)
    if args.output == "json":
        ctx.out.write(render.to_json(document))
    else:
        ctx.out.write(render.to_yaml(document))
    return EXIT_OK


# -- small commands ---------------------------------------------------------------------------


def cmd_rbac(ctx: Context) -> int:
    """The Roles a role needs, as YAML; contacts nothing (the table is `rbac.RULES`)."""
    from kubectl_keepalive.cli import validation
    from kubectl_keepalive.kube import rbac
    from kubectl_keepalive.usecases import app

    args = ctx.args
    subjects = [rbac.service_account(v) for v in _get(args, "serviceaccount") or ()]
    for subject in subjects:
        validation.namespace(subject.namespace or "", "--serviceaccount namespace")
        validation.object_name(subject.name, "--serviceaccount name")
    subjects += [rbac.Subject("Group", g) for g in _get(args, "group") or ()]
    subjects += [rbac.Subject("User", u) for u in _get(args, "subject_user") or ()]
    if _get(args, "name") is not None:
        validation.object_name(args.name, "--name")
    if not subjects:
        subjects = [rbac.placeholder()]
        ctx.note(f"note: no subject given: the bindings name ServiceAccount {rbac.PLACEHOLDER}/"
                 f"{rbac.PLACEHOLDER}, which kubectl apply refuses; edit them, or pass "
                 "--serviceaccount NS:NAME, --group NAME or --subject-user NAME")
    ctx.out.write(rbac.render(args.role, subjects, _get(args, "namespace"),
                              _get(args, "istio_namespace") or app.DEFAULT_ROOT_NAMESPACE,
                              _get(args, "name")))
    return EXIT_OK


def cmd_version(ctx: Context) -> int:
    ctx.out.write(f"kubectl-keepalive v{__version__} (python {sys.version.split()[0]})\n")
    return EXIT_OK


def cmd_completion(ctx: Context) -> int:
    from kubectl_keepalive.cli import completion

    if ctx.args.install is not None:
        path = completion.install_completion(ctx.args.install)
        ctx.note(f"wrote {path}")
    else:
        ctx.out.write(completion.completion_script())
    return EXIT_OK
