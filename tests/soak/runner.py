"""Carrying out a soak plan on the lab, with its faults, checking the invariants after each step.

Every plugin command runs as a user's script runs it (`kubectl keepalive ...` through the real
kubectl) and is written to a JSON-lines record with its exit code, time and output. After each
command and each step:
- the exit code is one the command documents (docs/exit-codes.md); no traceback; no stdout and
  one `error: ` line last on stderr when it fails; no raw control byte; it ended within its
  --timeout plus a minute;
- after `enable` exits 0: exactly one managed filter selects the gateway, by its Deployment's
  selector, and every pod's active listeners carry the requested options (read from each Envoy's
  admin, not through the plugin); `diff` with the same flags then exits 0;
- after `disable` exits 0: no managed filter selects it, and no pod's listener has options;
- after an exit 3 or 4 the same command, run again, exits 0;
- gateways the step did not target are untouched (their Deployments, their filters, and no
  keepalive on the listeners of those without a filter);
- after scaling or deleting a pod, the gateway's pods converge on its last enabled state.
The first step that breaks one stops the soak (its record says which step; replay the plan up to
it with `--steps`). Faults go through the lab's own controls and are undone before the checks;
the lab is put back as it was found (replicas, filters, istiod, the control plane) at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.cluster.conftest import MANAGED, Lab, labctl
from tests.cluster.faultlab import (
    component_pid,
    control_plane_up,
    eventually,
    frozen,
    istiod_pid_file,
    istiod_up,
    keepalive_options,
    start_lab_processes,
    wanted_options,
)
from tests.soak.plan import TARGETS, Settings, Step, Target

# The codes each command documents (docs/exit-codes.md); 5 (a bug) and 2 (these flags are valid)
# are never expected.
ALLOWED = {"enable": {0, 3, 4}, "disable": {0, 3, 4}, "diff": {0, 1, 3}, "status": {0, 3},
           "doctor": {0, 1, 3, 6}}
# The codes that are answers, with their data on stdout, rather than errors.
ANSWERS = {"diff": {0, 1}, "doctor": {0, 1, 6}}
GRACE = 60.0  # the "plus a minute" every command must end within
READ_TIMEOUT = 60.0  # the --timeout of commands without one (status, diff, doctor) for the bound
# Where in enable/disable a fault lands best: the first of these lines on stderr fires it (or
# the step's delay, whichever comes first).
MARKERS = {"freeze-apiserver": ("waiting for istiod to push", "Waiting for deployment",
                                "waiting for gateway"),
           "kill-istiod": ("waiting for istiod to push", "waiting for gateway"),
           "delete-pod": ("Waiting for deployment", "waiting for gateway")}
SEEDED = (("istio-system", "istio-ingressgateway"), ("istio-ingress", "istio-ingress"),
          ("web", "web-gateway-istio"), ("istio-canary", "istio-ingressgateway-canary"),
          ("istio-system", "istio-internalgateway"))
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
SETTLE = 45.0  # how long pods may take to show a state the plugin said it verified


class Violation(AssertionError):
    """An invariant broke: the soak stops at this step."""


@dataclass
class Ran:
    argv: list[str]
    exit: int
    seconds: float
    stdout: str
    stderr: str
    bound: float
    fault: str | None = None
    fault_fired: float | None = None  # seconds after the start


class Record:
    """The JSON-lines record: one object per line, written as it happens (flushed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, "time": round(time.time(), 3), **fields},
                          sort_keys=True)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Soak:
    lab: Lab
    record: Record
    budget: float | None = None  # seconds after which no new step starts
    # What each target should show: its enabled settings, None for off, absent for unknown.
    state: dict[str, Settings | None] = field(default_factory=dict)
    step: Step | None = None
    fault_errors: list[str] = field(default_factory=list)  # a fault the lab could not do
    failed_step: int | None = None

    # -- commands --------------------------------------------------------------------------

    def keepalive(self, argv: list[str], bound: float, fault: Callable[[], None] | None = None,
                  markers: tuple[str, ...] = (), delay: float = 0.0,
                  fault_name: str | None = None) -> Ran:
        """`kubectl keepalive ARGV`, killed (by pid) past `bound`; `fault` runs in a thread at
        the first marker on stderr or after `delay`, unless the command ended first."""
        started = time.monotonic()
        lock = threading.Lock()
        fired: list[float] = []
        ended = [False]
        threads: list[threading.Thread] = []

        def fire() -> None:
            with lock:
                if fired or ended[0] or fault is None:
                    return
                fired.append(time.monotonic() - started)
                thread = threading.Thread(target=fault)
                threads.append(thread)
                thread.start()

        out: list[str] = []
        err: list[str] = []
        with subprocess.Popen(["kubectl", "keepalive", *argv], env=self.lab.env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, errors="replace") as proc:
            watchdog = threading.Timer(bound, proc.kill)
            watchdog.start()
            timer = threading.Timer(delay, fire) if fault is not None else None
            if timer is not None:
                timer.start()
            stdout, stderr = proc.stdout, proc.stderr
            assert stdout is not None and stderr is not None
            reader = threading.Thread(target=lambda: out.append(stdout.read()))
            reader.start()
            for line in stderr:
                err.append(line)
                if any(m in line for m in markers):
                    fire()
            code = proc.wait()
            reader.join()
            watchdog.cancel()
            with lock:
                ended[0] = True
            if timer is not None:
                timer.cancel()
        for thread in threads:
            thread.join()  # the fault undone (thawed, restarted) before anything is checked
        if self.fault_errors:
            raise RuntimeError(f"the lab could not do the fault: {self.fault_errors}")
        ran = Ran(argv, code, round(time.monotonic() - started, 2), "".join(out), "".join(err),
                  bound, fault_name, round(fired[0], 2) if fired else None)
        self.record.write("command", step=self.step.index if self.step else None,
                          argv=argv, exit=code, seconds=ran.seconds, bound=bound,
                          fault=fault_name, fault_fired=ran.fault_fired, stdout=ran.stdout,
                          stderr=ran.stderr)
        self.check_command(argv[0], ran)
        return ran

    def check_command(self, command: str, ran: Ran) -> None:
        problems = []
        if ran.exit not in ALLOWED[command]:
            problems.append(f"exit {ran.exit} is not one {command} documents "
                            f"({sorted(ALLOWED[command])})")
        if "Traceback" in ran.stderr or "Traceback" in ran.stdout:
            problems.append("a traceback was printed")
        if ran.exit not in ANSWERS.get(command, {0}):
            if ran.stdout:
                problems.append(f"exit {ran.exit} with output on stdout")
            last = ran.stderr.strip().splitlines()[-1:] or [""]
            if not last[0].startswith("error: "):
                problems.append(f"exit {ran.exit} without an `error: ` line last on stderr")
        if any(ord(c) < 32 and c not in "\n\t" for c in ran.stdout + ran.stderr):
            problems.append("a raw control character was printed")
        if ran.seconds > ran.bound:
            problems.append(f"took {ran.seconds:.0f}s, past its --timeout plus a minute")
        if problems:
            self.fail(f"`kubectl keepalive {' '.join(ran.argv)}`: " + "; ".join(problems)
                      + f"\nstderr: {ran.stderr[-2000:]}")

    def fail(self, message: str) -> None:
        self.failed_step = self.step.index if self.step else None
        self.record.write("violation", step=self.failed_step, message=message)
        raise Violation(message)

    # -- the plan --------------------------------------------------------------------------

    def run(self, plan: list[Step]) -> int:
        """Carries out the plan (or as much as the budget allows); the steps done. Raises
        Violation at the first step that breaks an invariant. Always puts the lab back."""
        started = time.monotonic()
        done = 0
        original = {t.name: self.replicas(t) for t in TARGETS}
        try:
            for target in TARGETS:  # a target no filter of ours selects starts known: off
                if not self.selecting(target):
                    self.state[target.name] = None
                    self.check_state(target)
            for step in plan:
                if self.budget is not None and time.monotonic() - started > self.budget:
                    self.record.write("budget", steps_done=done, budget=self.budget)
                    break
                self.step = step
                self.record.write("step", step=step.index, plan=step.describe())
                before = self.untargeted(step.target)
                began = time.monotonic()
                self.one(step)
                self.recover()
                after = self.untargeted(step.target)
                if after != before:
                    self.fail(f"step {step.index} ({step.action} on {step.target.name}) "
                              f"changed gateways it did not target: {before} -> {after}")
                self.no_stray_keepalive(step.target)
                self.record.write("checked", step=step.index,
                                  seconds=round(time.monotonic() - began, 2))
                done += 1
        finally:
            self.step = None
            self.restore(original)
        return done

    def one(self, step: Step) -> None:
        target = step.target
        where = ["-n", target.namespace, "-l", target.selector]
        if step.action in ("enable", "disable"):
            argv = self.write_argv(step.action, target, step.settings, step.no_restart,
                                   step.timeout)
            fault = self.fault(step) if step.fault else None
            ran = self.keepalive(argv, step.timeout + GRACE, fault,
                                 MARKERS.get(step.fault or "", ()), step.fault_delay,
                                 step.fault)
            self.recover()
            self.finish(step.action, target, argv, ran,
                        step.settings if step.action == "enable" else None, step.timeout)
        elif step.action == "race":
            self.race(step)
        elif step.action == "diff":
            self.keepalive(["diff", *where, *step.settings.flags()], READ_TIMEOUT + GRACE)
        elif step.action == "status":
            self.keepalive(["status", *where], READ_TIMEOUT + GRACE)
        elif step.action == "doctor":
            self.keepalive(["doctor", *where, "--duration", "10m"], READ_TIMEOUT + GRACE)
        elif step.action == "scale":
            self.lab.kubectl("scale", "deployment", target.deployment, "-n", target.namespace,
                             f"--replicas={step.replicas}")
            self.settled(target)
        elif step.action == "delete-pod":
            names = self.pods(target)
            if names:
                self.lab.kubectl("delete", "pod", names[step.replicas % len(names)], "-n",
                                 target.namespace, "--wait=false")
            self.settled(target)
        else:
            raise ValueError(f"unknown action {step.action}")

    @staticmethod
    def write_argv(command: str, target: Target, settings: Settings, no_restart: bool,
                   timeout: int) -> list[str]:
        argv = [command, "-y", "-n", target.namespace, "-l", target.selector]
        if command == "enable":
            argv += settings.flags()
        return argv + ["--timeout", f"{timeout}s"] + (["--no-restart"] if no_restart else [])

    def finish(self, command: str, target: Target, argv: list[str], ran: Ran,
               settings: Settings | None, timeout: int) -> None:
        """After enable/disable: a failure is re-run once and must then succeed; the state it
        reports is then checked on the cluster and on every pod."""
        if ran.exit in (3, 4):
            again = self.keepalive(argv, timeout + GRACE)
            if again.exit != 0:
                self.fail(f"the re-run after exit {ran.exit} exited {again.exit}: "
                          f"{again.stderr.strip().splitlines()[-1:]}")
        self.state[target.name] = settings
        self.check_state(target)
        if settings is not None:
            where = ["-n", target.namespace, "-l", target.selector]
            diff = self.keepalive(["diff", *where, *settings.flags()], READ_TIMEOUT + GRACE)
            if diff.exit != 0:
                self.fail(f"diff after enable exited {diff.exit}:\n{diff.stdout[-2000:]}")

    def race(self, step: Step) -> None:
        """Two enables at once with different settings; each one that fails is re-run, and the
        gateway must end at the settings of the last command that succeeded."""
        assert step.rival is not None
        target = step.target
        argvs = [self.write_argv("enable", target, step.settings, step.no_restart,
                                 step.timeout),
                 self.write_argv("enable", target, step.rival, step.rival_no_restart,
                                 step.timeout)]
        results: list[Ran | BaseException] = [RuntimeError("not run")] * 2

        def one(i: int) -> None:
            try:
                results[i] = self.keepalive(argvs[i], step.timeout + GRACE)
            except BaseException as exc:  # the other racer still ends before this is raised
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        settings = (step.settings, step.rival)
        last: Settings | None = None
        for i, result in enumerate(results):
            assert isinstance(result, Ran)
            if result.exit in (3, 4):
                self.finish("enable", target, argvs[i], result, settings[i], step.timeout)
                last = settings[i]
        if last is None:  # both succeeded: the filter says who wrote last
            last = self.filter_settings(target)
            if last not in settings:
                self.fail(f"after two enables at once the filter sets {last}, neither's")
            self.state[target.name] = last
            self.check_state(target)

    # -- faults ----------------------------------------------------------------------------

    def fault(self, step: Step) -> Callable[[], None]:
        target = step.target

        def freeze_apiserver() -> None:
            with frozen(component_pid("kube-apiserver")):
                time.sleep(step.fault_seconds)

        def kill_istiod() -> None:
            pid = int(istiod_pid_file(target.revision).read_text())
            try:
                os.kill(pid, signal.SIGKILL)
                time.sleep(step.fault_seconds)
            finally:
                start_lab_processes(self.lab)  # the lab starts what died

        def delete_pod() -> None:
            names = self.pods(target)
            if names:
                self.lab.kubectl("delete", "pod", names[0], "-n", target.namespace,
                                 "--wait=false", check=False)

        chosen = {"freeze-apiserver": freeze_apiserver, "kill-istiod": kill_istiod,
                  "delete-pod": delete_pod}[step.fault or ""]

        def logged() -> None:
            self.record.write("fault", step=step.index, fault=step.fault,
                              seconds=step.fault_seconds)
            try:
                chosen()
            except Exception as exc:  # the lab's control failed: the soak cannot go on
                self.fault_errors.append(f"{step.fault}: {type(exc).__name__}: {exc}")
            finally:
                self.record.write("fault-undone", step=step.index, fault=step.fault)

        return logged

    def recover(self) -> None:
        """Whatever a fault left down is up again before anything is checked."""
        eventually(lambda: control_plane_up(self.lab), "the control plane", 180)
        if not all(istiod_up(t.revision) for t in TARGETS):
            start_lab_processes(self.lab)
        eventually(lambda: all(istiod_up(t.revision) for t in TARGETS), "istiod", 120)

    # -- what the cluster and the Envoys show ----------------------------------------------

    def replicas(self, target: Target) -> int:
        found = self.lab.get_json("deployment", target.deployment, "-n", target.namespace)
        return int(found["spec"].get("replicas", 1))

    def deployment_selector(self, target: Target) -> dict[str, str]:
        found = self.lab.get_json("deployment", target.deployment, "-n", target.namespace)
        return dict(found["spec"]["selector"]["matchLabels"])

    def pod_objects(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        items = self.lab.get_json("pods", "-n", namespace, "-l", text)["items"]
        return sorted((i for i in items if not i["metadata"].get("deletionTimestamp")
                       and i["status"].get("phase") == "Running"),
                      key=lambda i: str(i["metadata"]["name"]))

    def pods(self, target: Target) -> list[str]:
        return [str(i["metadata"]["name"])
                for i in self.pod_objects(target.namespace, self.deployment_selector(target))]

    def managed_filters(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.lab.get_json(
            "envoyfilters.networking.istio.io", "-n", namespace, "-l", MANAGED)["items"]
        return items

    def selecting(self, target: Target) -> list[dict[str, Any]]:
        """The managed filters whose workloadSelector matches the target's pod template."""
        found = self.lab.get_json("deployment", target.deployment, "-n", target.namespace)
        labels = found["spec"]["template"]["metadata"].get("labels") or {}
        return [f for f in self.managed_filters(target.namespace)
                if all(labels.get(k) == v for k, v in
                       ((f["spec"].get("workloadSelector") or {}).get("labels") or {}).items())]

    def filter_settings(self, target: Target) -> Settings | None:
        found = self.selecting(target)
        if len(found) != 1:
            return None
        values = {}
        for patch in found[0]["spec"]["configPatches"]:
            for option in patch["patch"]["value"].get("socket_options", []):
                values[int(option["name"])] = int(option.get("int_value", 0))
        return Settings(values.get(4, 0), values.get(5, 0), values.get(6, 0))

    def shows(self, target: Target, settings: Settings | None) -> list[str]:
        """The pods of the target that do not (yet) show the state."""
        wanted = (wanted_options(settings.idle, settings.interval, settings.probes)
                  if settings is not None else [])
        names = self.pods(target)
        wrong = [] if names else ["no running pod"]
        for pod in names:
            options = keepalive_options(self.lab, target.namespace, pod)
            if not options:
                wrong.append(f"{pod}: no TCP listener yet")
            elif any(got != wanted for got in options.values()):
                wrong.append(f"{pod}: {options}")
        return wrong

    def check_state(self, target: Target) -> None:
        if target.name not in self.state:
            return
        settings = self.state[target.name]
        found = self.selecting(target)
        if settings is not None:
            if len(found) != 1:
                self.fail(f"after enable, {len(found)} managed filters select "
                          f"{target.namespace}/{target.deployment}")
            selector = (found[0]["spec"].get("workloadSelector") or {}).get("labels")
            if selector != self.deployment_selector(target):
                self.fail(f"the filter selects {selector}, not the Deployment's selector")
        elif found:
            self.fail(f"after disable, managed filter(s) still select {target.deployment}: "
                      + ", ".join(f["metadata"]["name"] for f in found))
        left: list[str] = []

        def converged() -> bool:
            left[:] = self.shows(target, settings)
            return not left

        try:
            eventually(converged, "the pods", SETTLE)
        except AssertionError:
            self.fail(f"{target.namespace}/{target.deployment} should show "
                      f"{settings or 'no keepalive'}: {'; '.join(left)}")

    def settled(self, target: Target) -> None:
        """After a scale or a deleted pod: the rollout done, every pod at the known state."""
        self.lab.kubectl("rollout", "status", f"deployment/{target.deployment}", "-n",
                         target.namespace, "--timeout=180s")
        if target.name in self.state:
            self.check_state(target)
        else:
            eventually(lambda: all(keepalive_options(self.lab, target.namespace, p)
                                   for p in self.pods(target)), "the new pods' listeners",
                       SETTLE)

    def untargeted(self, target: Target) -> dict[str, Any]:
        """What a step must not change outside its target: the other Deployments' generation,
        replicas and restart stamp, and every managed filter but the target's."""
        seen: dict[str, Any] = {}
        for namespace, name in SEEDED:
            if (namespace, name) == (target.namespace, target.deployment):
                continue
            dep = self.lab.get_json("deployment", name, "-n", namespace)
            annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
            seen[f"deployment {namespace}/{name}"] = (
                dep["metadata"]["generation"], dep["spec"].get("replicas"),
                annotations.get(RESTARTED_AT))
        for namespace in sorted({ns for ns, _ in SEEDED}):
            for item in self.managed_filters(namespace):
                meta = item["metadata"]
                if (namespace, meta["name"]) != (target.namespace,
                                                 f"keepalive-{target.deployment}"):
                    seen[f"envoyfilter {namespace}/{meta['name']}"] = meta["resourceVersion"]
        return seen

    def no_stray_keepalive(self, target: Target) -> None:
        """Seeded gateways no filter of ours selects have no keepalive on any listener."""
        for namespace, name in SEEDED:
            other = Target(name, namespace, name, "", "")
            if (namespace, name) == (target.namespace, target.deployment) or \
                    self.selecting(other):
                continue
            for pod in self.pods(other):
                options = keepalive_options(self.lab, namespace, pod)
                if any(options.values()):
                    self.fail(f"untargeted {namespace}/{name} pod {pod} has options {options}")

    # -- putting the lab back --------------------------------------------------------------

    def restore(self, original: dict[str, int]) -> None:
        self.recover()
        for target in TARGETS:
            self.lab.kubectl("scale", "deployment", target.deployment, "-n", target.namespace,
                             f"--replicas={original[target.name]}")
        self.lab.reset()
        for target in TARGETS:
            self.lab.kubectl("rollout", "status", f"deployment/{target.deployment}", "-n",
                             target.namespace, "--timeout=180s")
            eventually(lambda t=target: not self.shows(t, None),
                       f"{target.name} without keepalive", 120)
        self.record.write("restored", replicas=original)


@contextmanager
def recording(path: Path) -> Iterator[Record]:
    record = Record(path)
    try:
        yield record
    finally:
        record.close()


def run_soak(lab: Lab, plan: list[Step], record_path: Path, seed: int,
             budget: float | None = None) -> int:
    """The plan on the lab, recorded at `record_path`; the steps done. Raises Violation."""
    with recording(record_path) as record:
        record.write("plan", seed=seed, steps=len(plan), budget=budget,
                     pods=len(labctl.pod_records()))
        soak = Soak(lab, record, budget)
        try:
            done = soak.run(plan)
        except Violation as exc:
            at = soak.failed_step
            replay = (f"; replay: make soak SEED={seed} STEPS={len(plan)} FIRST={at + 1}"
                      if at is not None else "")
            raise Violation(f"step {at}: {exc}\nrecord: {record_path}{replay}") from None
        record.write("summary", seed=seed, steps_done=done)
        return done
