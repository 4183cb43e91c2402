"""Applying a plan: write the filter, wait for istiod's push, roll, wait and verify.

Gateway by gateway, each step is recorded in an `ApplyResult`, so a failure halfway says what
was done and a re-run of the same command finishes the job.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from kubectl_keepalive.envoy import sockopts
from kubectl_keepalive.errors import (
    AlreadyExists,
    ClusterError,
    ConflictError,
    ForbiddenError,
    KeepaliveError,
    UnavailableError,
    VerificationError,
)
from kubectl_keepalive.istio import envoyfilter
from kubectl_keepalive.kube import rollout
from kubectl_keepalive.kube.cluster import Cluster
from kubectl_keepalive.model import Gateway, KeepaliveSettings, Listener, ListenerState, Pod
from kubectl_keepalive.usecases import drainplan
from kubectl_keepalive.usecases.app import (
    GatewayPlan,
    Plan,
    PodListeners,
    Report,
    Scope,
    describe_keepalive,
    describe_settings,
    discover,
    filter_names,
    kept_by_foreign,
    read_pods,
)

T = TypeVar("T")


@dataclass
class Step:
    """One step the plan needs for a gateway, in the words for each outcome."""

    done_as: str  # "deployment ns/gw restarted"
    missing_as: str  # "deployment ns/gw not restarted"
    done: bool = False


@dataclass
class GatewayAccount:
    """One gateway's steps in order, and its pods as verification left them."""

    gateway: str  # namespace/name
    steps: list[Step] = field(default_factory=list)
    verified_pods: list[str] = field(default_factory=list)
    unverified_pods: list[str] = field(default_factory=list)  # why: in the error itself
    verify: Step | None = None  # the last step; its pods say more than "not verified"

    def need(self, done_as: str, missing_as: str) -> Step:
        step = Step(done_as, missing_as)
        self.steps.append(step)
        return step

    def done(self) -> list[str]:
        out = [s.done_as for s in self.steps if s.done]
        if self.verified_pods and self.unverified_pods:  # all verified is a step of its own
            out.append(f"pod(s) {', '.join(self.verified_pods)} of gateway {self.gateway} "
                       "verified")
        return out

    def missing(self) -> list[str]:
        out = [s.missing_as for s in self.steps if not s.done and s is not self.verify]
        if self.verify is not None and not self.verify.done:
            out.append(f"pod(s) {', '.join(self.unverified_pods)} of gateway {self.gateway} "
                       "not verified" if self.unverified_pods else self.verify.missing_as)
        return out


@dataclass
class ApplyResult:
    """What was done, gateway by gateway: `done` and `verified` in words for the output, and
    `gateways` step by step, so a failure halfway can say exactly what was and was not done."""

    done: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    gateways: list[GatewayAccount] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # gateways no step was tried for

    def mark(self, step: Step) -> None:
        step.done = True
        self.done.append(step.done_as)

    def account(self) -> tuple[list[str], list[str]]:
        """(what was done, what was not), in the gateways' order."""
        done = [line for g in self.gateways for line in g.done()]
        missing = [line for g in self.gateways for line in g.missing()]
        missing += [f"gateway {label}: nothing done" for label in self.not_started]
        return done, missing


class LostRace(ConflictError):
    """Another writer changed the filter while this run waited for it to take effect: a re-run
    would not finish this run's work but undo the other's, and the message says so."""


class PartialFailure(KeepaliveError):
    """Some steps succeeded before one failed; the message lists both, and a re-run finishes
    (after a lost race, the cause says what a re-run would do instead)."""

    def __init__(self, cause: KeepaliveError, result: ApplyResult) -> None:
        done, missing = result.account()
        rerun = "" if isinstance(cause, LostRace) else "; re-run the same command to finish"
        super().__init__(f"{cause} (already done: {'; '.join(done) or 'nothing'}; not done: "
                         f"{'; '.join(missing) or 'nothing'}{rerun})")
        self.exit_code = cause.exit_code
        self.result = result


def check_foreign(plan: Plan, force: bool) -> None:
    if force or plan.settings is None:
        return
    for gp in plan.gateways:
        if gp.foreign:
            names = ", ".join(str(f) for f in gp.foreign)
            raise ConflictError(
                f"gateway {gp.gateway.namespace}/{gp.gateway.name} already gets keepalive "
                f"socket options from EnvoyFilter {names}; both would apply (MERGE appends) and "
                "the later one wins: remove it, or pass --force to add ours anyway"
            )


def apply(
    cluster: Cluster,
    plan: Plan,
    scope: Scope,
    *,
    restart: bool,
    timeout: float,
    report: Report,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.timezone.utc),
    dry_run: bool = False,
) -> ApplyResult:
    """Write filters, roll, wait and verify, gateway by gateway, reporting what was done."""
    result = ApplyResult()
    run = _Run(cluster, plan, scope, clock() + timeout, report, clock, sleep)
    try:
        for index, gp in enumerate(plan.gateways):
            result.not_started = [_label(g.gateway) for g in plan.gateways[index + 1:]
                                  if g.changes or g.writes]
            _apply_one(run, gp, restart, now, dry_run, result)
    except KeepaliveError as exc:
        if result.done:
            raise PartialFailure(exc, result) from None
        raise
    result.not_started = []
    return result


@dataclass(frozen=True)
class _Run:
    """What every step of one apply shares: where, what, and one deadline for all waits."""

    cluster: Cluster
    plan: Plan
    scope: Scope
    deadline: float
    report: Report
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """call(), asked again while the API server does not answer and the deadline allows
        (a restarting or overloaded API server comes back); any other error ends it at once."""
        while True:
            try:
                return call()
            except UnavailableError as exc:
                if not self.left():
                    raise UnavailableError(
                        f"the API server did not answer within the timeout while {what}: "
                        f"{exc}") from None
                self.report(f"the API server is not answering ({exc}); asking again until "
                            "the timeout")
                self.sleep(min(2.0, self.left()))

    def read(self, gw: Gateway) -> tuple[tuple[Pod, ...], dict[str, PodListeners]]:
        """The gateway's current pods, found afresh (a rollout replaces them), and their reads."""
        found = self.retrying(f"listing the pods of gateway {_label(gw)}",
                              lambda: discover(self.cluster, _scope_for(gw, self.scope)))
        fresh = [g for g in found if g.name == gw.name]
        pods = fresh[0].pods if fresh else ()
        return pods, read_pods(self.cluster, pods, self.scope)


def _apply_one(
    run: _Run,
    gp: GatewayPlan,
    restart: bool,
    now: Callable[[], datetime.datetime],
    dry_run: bool,
    result: ApplyResult,
) -> None:
    cluster, plan = run.cluster, run.plan
    gw = gp.gateway
    label = f"{gw.namespace}/{gw.name}"
    deployment = gw.deployment
    if restart and gp.needs_restart and deployment is None:
        raise ClusterError(f"gateway {label} has no Deployment to restart; pass --no-restart")
    if restart and gp.needs_restart and deployment is not None and deployment.paused:
        raise ClusterError(
            f"deployment {label} is paused: `kubectl rollout resume deployment/{gw.name} -n "
            f"{gw.namespace}` first, or pass --no-restart"
        )
    suffix = " (server dry run)" if dry_run else ""
    account = GatewayAccount(label)
    result.gateways.append(account)
    written: Step | None = None
    if gp.action in ("create", "update", "delete"):
        source = gp.wanted if gp.action != "delete" else gp.current
        what = f"envoyfilter {gw.namespace}/{_name(source or {})}"
        past = {"create": "created", "update": "updated", "delete": "deleted"}[gp.action]
        written = account.need(f"{what} {past}{suffix}", f"{what} not {past}")
    rolls = not dry_run and bool(gp.changes) and restart and deployment is not None
    restarted = (account.need(f"deployment {label} restarted", f"deployment {label} not restarted")
                 if rolls and gp.needs_restart else None)
    rolled = (account.need(f"deployment {label} rolled out",
                           f"rollout of deployment {label} not completed") if rolls else None)
    if gp.action == "create" and gp.wanted is not None:
        _create_or_update(cluster, gp.wanted, dry_run)
    elif gp.action == "update" and gp.wanted is not None and gp.current is not None:
        _update(cluster, gp.current, gp.wanted, dry_run)
    elif gp.action == "delete" and gp.current is not None:
        _delete(cluster, gp.current, dry_run)
    if written is not None:
        result.mark(written)
    if dry_run:
        return
    if not gp.changes:
        result.verified.append(f"gateway {label}: already {describe_settings(plan.settings)}")
        return
    verified = account.need(f"gateway {label} verified", f"gateway {label} not verified")
    account.verify = verified
    if rolled is not None and deployment is not None:
        if restarted is not None:
            if _await_push(run, gp):
                # Two short lines (a terminal's width): Envoy replaced the listeners in place,
                # what was open on the old ones closes when their drain time runs out.
                run.report(f"gateway {label}: istiod's push already made the change live on "
                           "every pod")
                run.report("  the rollout only ends connections accepted before the change "
                           "(--no-restart skips it)")
            # One timestamp for every attempt: a patch that went through but whose answer was
            # lost, sent again, changes nothing and starts no second rollout.
            at = rollout.restarted_at(now())
            run.retrying(f"restarting deployment {label}",
                         lambda: cluster.restart_deployment(gw.namespace, gw.name, at, False))
            result.mark(restarted)
        rollout.wait(
            gw.name,
            lambda: cluster.rollout_state(gw.namespace, gw.name),
            run.left(),
            run.clock,
            run.sleep,
            run.report,
        )
        result.mark(rolled)
    _verify(run, gp, result, account)
    verified.done = True


def _create_or_update(cluster: Cluster, wanted: dict[str, Any], dry_run: bool) -> None:
    namespace = wanted["metadata"]["namespace"]
    try:
        cluster.create_envoyfilter(namespace, wanted, dry_run)
    except AlreadyExists:
        # Another enable created it since we read: converge on it instead of failing.
        current = cluster.get_envoyfilter(namespace, _name(wanted))
        if current is None:
            raise ClusterError(f"envoyfilter {namespace}/{_name(wanted)} vanished") from None
        if envoyfilter.comparable(current) != envoyfilter.comparable(wanted):
            _update(cluster, current, wanted, dry_run)


def _update(cluster: Cluster, current: dict[str, Any], wanted: dict[str, Any],
            dry_run: bool) -> None:
    import jsonpatch

    if not envoyfilter.is_managed(current):
        raise ConflictError(
            f"envoyfilter {_ns(current)}/{_name(current)} exists but is not managed by "
            "kubectl-keepalive; refusing to overwrite it"
        )
    version = _version(current)
    operations = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
    operations += jsonpatch.make_patch(
        envoyfilter.comparable(current), envoyfilter.comparable(wanted)
    ).patch
    try:
        cluster.patch_envoyfilter(_ns(current), _name(current), operations, dry_run)
    except ClusterError as exc:
        # The resourceVersion test fails (422) when another writer came first: name it.
        now = _if_raced(cluster, exc, current)
        if now is not False:
            raise _lost_race(current, now, "update", (
                f"replaces those settings with this run's ({_settings_text(wanted)})"
                if now is not None else "creates it again with this run's settings")) from None
        raise


def _delete(cluster: Cluster, current: dict[str, Any], dry_run: bool) -> None:
    try:
        cluster.delete_envoyfilter(_ns(current), _name(current), _version(current), dry_run)
    except ClusterError as exc:
        # The resourceVersion precondition fails (409) when another writer came first.
        now = _if_raced(cluster, exc, current)
        if now is None:
            return  # another disable deleted it first: what this run wanted is done
        if now is not False:
            raise _lost_race(current, now, "delete", "deletes it again") from None
        raise


def _if_raced(cluster: Cluster, exc: ClusterError, read: dict[str, Any],
              ) -> dict[str, Any] | Literal[False] | None:
    """After a refused write: the filter as it is now (None: deleted) when another writer
    changed it since this run read it, else False (the error is not a lost race)."""
    if isinstance(exc, (UnavailableError, ForbiddenError)):
        return False
    try:
        now = cluster.get_envoyfilter(_ns(read), _name(read))
    except KeepaliveError:
        return False
    return False if now is not None and _version(now) == _version(read) else now


def _lost_race(read: dict[str, Any], now: dict[str, Any] | None, verb: str,
               rerun: str) -> LostRace:
    what = (f"changed by another writer ({_writer(now)}; it now sets {_settings_text(now)})"
            if now is not None else "deleted by another writer (a disable?)")
    return LostRace(f"envoyfilter {_ns(read)}/{_name(read)} was {what} before this run's "
                    f"{verb}; re-running this command {rerun}: run the command whose settings "
                    "you mean to keep")


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _verify(run: _Run, gp: GatewayPlan, result: ApplyResult, account: GatewayAccount) -> None:
    """Re-read every current pod until each shows the wanted state on every port, or time out;
    the account keeps which pods were verified and which not (and why)."""
    plan = run.plan
    gw = gp.gateway
    label = f"{gw.namespace}/{gw.name}"
    ports, kept = _ports_of(gp)
    if kept:
        result.verified.append(f"gateway {label}: keepalive on port(s) "
                               f"{', '.join(map(str, kept))} stays, set by EnvoyFilter "
                               f"{filter_names(gp.foreign)}")
        if not ports:
            return
    while True:
        pods, reads = run.read(gw)
        pending: list[str] = []
        account.verified_pods, account.unverified_pods = [], []
        for pod in pods:
            got = reads.get(f"{pod.namespace}/{pod.name}")
            if got is None or got.error:
                why = [f"{pod.name}: {got.error if got else 'pod is ' + pod.phase}"]
            else:
                why = [problem for port in ports
                       for problem in _port_problem(got, port, plan.settings)]
            pending.extend(why)
            if why:
                account.unverified_pods.append(pod.name)
            else:
                account.verified_pods.append(pod.name)
        if pods and not pending:
            account.unverified_pods = []
            # Compact, as status's KEEPALIVE column: the line fits a terminal.
            settings = plan.settings
            what = (f"on {settings.idle}s/{settings.interval}s/x{settings.probes}"
                    if settings is not None else "off")
            result.verified.append(
                f"gateway {label}: {what} on port(s) {', '.join(map(str, ports))} of "
                f"{len(pods)} pod(s)"
            )
            return
        # Another enable or disable may have changed the filter meanwhile: then these pods
        # will never show this run's settings, and waiting out the timeout helps nobody.
        _check_unchanged(run, gp, f"verified gateway {label}")
        if not run.left():
            raise VerificationError(
                f"gateway {label}: options not live within the timeout: "
                + ("; ".join(pending) or "no running pods")
            )
        run.report(f"waiting for gateway {label} to show {describe_settings(plan.settings)} "
                   f"({len(pending)} pending)")
        run.sleep(min(2.0, run.left()))


def _label(gw: Gateway) -> str:
    return f"{gw.namespace}/{gw.name}"


def _await_push(run: _Run, gp: GatewayPlan) -> bool:
    """Before a restart, wait until istiod has pushed the filter change to the running pods;
    True when the pushed listeners are already the active ones on every pod read (Envoy >= 1.25
    replaces a listener in place: the roll adds nothing to the options).

    Restarting first races istiod's debounce: a new pod may start with the old listeners and
    take the options in place later, draining the connections it accepted meanwhile. And when
    no istiod translates the filter, a restart would only cut traffic. Every readable pod's
    newest listener config (active, warming or rejected) must show the wanted state. A pod that
    could not be read when planning, or refuses to be read, is not waited for; one that does
    not answer yet is (verification covers the new pods after the restart either way). Ports
    where a foreign filter keeps keepalive on after a disable are not waited for.
    """
    gw = gp.gateway
    label = f"{gw.namespace}/{gw.name}"
    ports, _kept = _ports_of(gp)
    # Pods already unreadable when planning ("name: error") are not waited for.
    skipped = {entry.split(":", 1)[0] for entry in gp.unreadable_pods}
    while True:
        _pods, reads = run.read(gw)
        waited = [got for got in reads.values() if got.pod and got.pod.name not in skipped]
        readable = [got for got in waited if not got.error]
        unanswered = [f"{got.pod.name}: {got.error}" for got in waited
                      if got.pod and got.error and got.transient]
        not_pushed = [problem for got in readable for port in ports
                      if (problem := _not_pushed(got, port, run.plan.settings))]
        pending = unanswered + not_pushed
        if gp.wanted is not None and readable:
            # A port no pod listens on cannot take the options, before or after a restart.
            missing = [p for p in ports if not any(_tcp_listeners(got, p) for got in readable)]
            if missing:
                raise VerificationError(
                    f"gateway {label}: no pod has a TCP listener on port(s) "
                    f"{', '.join(map(str, missing))}, so deployment {label} was not restarted; "
                    "check --port against `kubectl keepalive status`"
                )
        if not pending:
            live = bool(readable) and bool(ports) and all(
                not _port_problem(got, port, run.plan.settings)
                for got in readable for port in ports)
            return live and drainplan.replaces_in_place(
                run.cluster, [got.pod for got in readable if got.pod], run.scope.pod_timeout)
        if not run.left() and not not_pushed:
            # Pods whose Envoy does not answer: istiod may well have pushed; name them.
            names = ", ".join(entry.split(":", 1)[0] for entry in unanswered)
            raise VerificationError(
                f"gateway {label}: the Envoy admin of pod(s) {names} did not answer within "
                f"the timeout ({run.scope.pod_timeout:.0f}s per read), so deployment {label} "
                f"was not restarted ({'; '.join(unanswered)})"
            )
        if not run.left():
            revisions = ", ".join(sorted(envoyfilter.serving_revisions(gw)))
            raise VerificationError(
                f"gateway {label}: istiod has not pushed the change to its pods within the "
                f"timeout, so deployment {label} was not restarted ({'; '.join(pending)}); "
                f"is istiod for revision {revisions} running?"
            )
        _check_unchanged(run, gp, f"waited for istiod's push, so deployment {label} was "
                         "not restarted")
        run.report(f"waiting for istiod to push the change to gateway {label} before "
                   f"restarting ({len(pending)} pending)")
        run.sleep(min(2.0, run.left()))


def _check_unchanged(run: _Run, gp: GatewayPlan, waiting: str) -> None:
    """The filter is still what this run wrote (or still gone, after a delete). Another enable
    with other settings, or a disable, may have changed it meanwhile: then istiod will never
    push what this run waits for, and the timeout would blame istiod or the pods. Say so at
    once, naming the other writer and what it wrote, and what a re-run of this command does."""
    source = gp.wanted if gp.wanted is not None else gp.current
    if source is None:
        return
    namespace, name = _ns(source), _name(source)
    current = run.retrying(f"reading envoyfilter {namespace}/{name}",
                           lambda: run.cluster.get_envoyfilter(namespace, name))
    if gp.wanted is None:
        now = "created again" if current is not None else None
    elif current is None:
        now = "deleted"
    elif envoyfilter.comparable(current) != envoyfilter.comparable(gp.wanted):
        now = "changed"
    else:
        now = None
    if now is None:
        return
    if current is None:
        what = "a disable?"
        rerun = "creates it again with this run's settings"
    else:
        what = f"{_writer(current)}; it now sets {_settings_text(current)}"
        rerun = ("replaces those settings with this run's "
                 f"({describe_settings(run.plan.settings)})" if gp.wanted is not None
                 else "deletes it again")
    raise LostRace(
        f"envoyfilter {namespace}/{name} was {now} by another writer ({what}) while this run "
        f"{waiting}; re-running this command {rerun}: run the command whose settings you mean "
        "to keep")


# A writer's name as the API server records it, shortened: it is printed on one line.
_WRITER_MAX = 100


def _writer(obj: dict[str, Any]) -> str:
    """The field manager of the object's newest managedFields entry, and when it wrote."""
    entries = [e for e in (obj.get("metadata") or {}).get("managedFields") or []
               if isinstance(e, dict)]
    if not entries:
        return "writer unknown"
    newest = max(entries, key=lambda e: str(e.get("time") or ""))
    manager = str(newest.get("manager") or "unnamed")[:_WRITER_MAX]
    when = str(newest.get("time") or "")[:_WRITER_MAX]
    return f"field manager {manager}" + (f" at {when}" if when else "")


def _settings_text(obj: dict[str, Any]) -> str:
    """Per port, the keepalive the filter sets: "on idle=30s ... on port(s) 8080, 8443"."""
    by_settings: dict[str, list[int]] = {}
    for port, settings in sorted(envoyfilter.settings_in(obj).items()):
        text = describe_settings(settings) if settings else "partial keepalive options"
        by_settings.setdefault(text, []).append(port)
    if not by_settings:
        return "no keepalive"
    return "; ".join(f"{text} on port(s) {', '.join(map(str, ports))}"
                     for text, ports in by_settings.items())


def _tcp_listeners(got: PodListeners, port: int) -> list[Listener]:
    """The pod's newest (not draining) TCP listeners on the port."""
    return [lst for lst in got.listeners
            if lst.port == port and lst.protocol == "TCP"
            and lst.state is not ListenerState.DRAINING]


def _not_pushed(got: PodListeners, port: int, wanted: KeepaliveSettings | None) -> str | None:
    """What the pod's newest config for the TCP port shows, unless it is the wanted state (or
    there is no such listener, so nothing to wait for)."""
    shown = [sockopts.listener_keepalive(lst) for lst in _tcp_listeners(got, port)]
    if not shown or any(k.matches(wanted) if wanted else not k.enabled for k in shown):
        return None
    name = got.pod.name if got.pod else "?"
    return f"{name}: port {port} shows {describe_keepalive(shown[0])}"


def _ports_of(gp: GatewayPlan) -> tuple[list[int], list[int]]:
    """(ports to check, ports a foreign filter keeps on): those the plan changes and those its
    filter (new, or the one removed) names. Disabling removes only our options; another
    filter's stay where it puts them, so those ports are not checked for "off"."""
    source = gp.wanted if gp.wanted is not None else gp.current
    planned = set(envoyfilter.settings_in(source)) if source else set()
    ports = sorted({c.port for c in gp.ports} | planned)
    kept = kept_by_foreign(gp.foreign, ports) if gp.wanted is None else []
    return [p for p in ports if p not in kept], kept


def _scope_for(gateway: Gateway, scope: Scope) -> Scope:
    return Scope(gateway.namespace, scope.selector, scope.root_namespace, scope.parallel,
                 scope.pod_timeout)


def _port_problem(got: PodListeners, port: int, wanted: KeepaliveSettings | None) -> list[str]:
    name = got.pod.name if got.pod else "?"
    for lst in got.listeners:
        if lst.port == port and lst.protocol == "TCP" and lst.state is ListenerState.REJECTED:
            return [f"{name}: port {port} update rejected: {lst.error}"]
    active = [lst for lst in got.listeners
              if lst.port == port and lst.protocol == "TCP" and lst.state is ListenerState.ACTIVE]
    if not active:
        return [f"{name}: no active TCP listener on port {port}"]
    keepalive = sockopts.listener_keepalive(active[0])
    ok = keepalive.matches(wanted) if wanted else not keepalive.enabled
    if ok:
        return []
    return [f"{name}: port {port} shows {describe_keepalive(keepalive)}"]
