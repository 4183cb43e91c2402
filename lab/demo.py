#!/usr/bin/env python3
"""`make demo`: the incident that started kubectl-keepalive, replayed and fixed, narrated.

A 5-minute balancer idle timeout is scaled down to 5 seconds and a 10-minute API call to 12
seconds, so the story takes about two minutes. The gateway is the lab cluster's
`istio-ingressgateway` pod: its real Envoy runs in the pod's own network namespace and takes its
listeners from the real istiod (real API server, real rollout, Envoy admin reached through
port-forward). The packets go through network namespaces where an nftables balancer forgets idle
flows.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import labctl  # noqa: E402  (lab/ is this script's directory)

from tests.support.netlab import VIP, VIP_PORT, IncidentLab  # noqa: E402

IDLE_TIMEOUT = 5
DELAY = 12.0
PROBE_HOLD = 8  # past the balancer's idle timeout
NAMESPACE = "istio-system"
SELECTOR = "app=istio-ingressgateway"
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str) -> None:
    print("\n" + textwrap.fill(text, 96), flush=True)


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}", flush=True)


def shell(kubeconfig: str, *argv: str, show: bool = True) -> str:
    """Run a command as the reader would type it; show its output in the order it came."""
    shown = " ".join(argv)
    print(f"{DIM}$ {shown}{RESET}", flush=True)
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    done = subprocess.run(list(argv), env=env, stdout=subprocess.PIPE,
                          stderr=None if show else subprocess.PIPE, text=True, timeout=600)
    if show and done.stdout.strip():
        print(textwrap.indent(done.stdout.rstrip(), "  "), flush=True)
    if done.returncode != 0:
        raise SystemExit(f"demo: `{shown}` exited {done.returncode}")
    return done.stdout


def request(lab: IncidentLab, label: str) -> bool:
    print(f"{DIM}client -> balancer 198.18.100.10:80 -> gateway :8080 -> app (answers after "
          f"{DELAY:.0f}s){RESET}", flush=True)
    result = lab.request()
    verdict = (f"200 OK after {result.seconds:.1f}s" if result.ok
               else f"FAILED after {result.seconds:.1f}s: {result.error}")
    print(f"  {label}: {BOLD}{verdict}{RESET}", flush=True)
    return result.ok


def probe(lab: IncidentLab, label: str) -> int:
    """`kubectl keepalive probe` from the client's side of the balancer: hold one connection
    silent past the balancer's idle timeout, then ask again on it."""
    port = "" if VIP_PORT == 80 else f":{VIP_PORT}"
    argv = ["kubectl", "keepalive", "probe", "--url", f"http://{VIP}{port}/slow?delay=0",
            "--hold", f"{PROBE_HOLD}s"]
    print(f"{DIM}(in the client's network namespace, behind the balancer){RESET}", flush=True)
    print(f"{DIM}$ {' '.join(shlex.quote(word) for word in argv)}{RESET}", flush=True)
    done = subprocess.run(["ip", "netns", "exec", lab.client, *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    print(textwrap.indent(done.stdout.rstrip(), "  "), flush=True)
    print(f"  {label}: {BOLD}exit {done.returncode}{RESET}", flush=True)
    return done.returncode


def main() -> int:
    kubeconfig = sys.argv[1]
    started = time.monotonic()
    say(f"The setup: client -> L4 load balancer (idle timeout {IDLE_TIMEOUT}s, standing for a "
        f"cloud balancer's 5 minutes) -> Istio ingress gateway (Envoy) -> an app that answers "
        f"after {DELAY:.0f}s (standing for a 10-minute API call). While the app works, no byte "
        "crosses the connection, so the balancer forgets the flow.")
    # A demo interrupted earlier may have left keepalive on: start from the incident's state.
    shell(kubeconfig, "kubectl", "keepalive", "disable", "-y", "-n", NAMESPACE, "-l", SELECTOR,
          show=False)
    netns = labctl.single_pod_netns(kubeconfig, NAMESPACE, SELECTOR)
    with tempfile.TemporaryDirectory() as tmp, \
            IncidentLab(IDLE_TIMEOUT, backend_delay_s=DELAY, workdir=Path(tmp),
                        gateway_netns=netns) as lab:

        step("1. What the gateway has now")
        shell(kubeconfig, "kubectl", "keepalive", "status", "-n", NAMESPACE, "-l", SELECTOR)
        say("KEEPALIVE is off on every listener: nothing keeps an idle client connection alive.")

        step("2. The long request, as the users saw it")
        cut = not request(lab, "without keepalive")
        say("The balancer dropped the idle flow after 5s; the answer at 12s had nowhere to go. "
            "That is the incident." if cut else "Unexpected: the request survived.")

        step("2b. The same, measured from the users' side: kubectl keepalive probe")
        say(f"probe opens a connection through the balancer, asks once, stays silent for "
            f"{PROBE_HOLD}s and asks again on the same connection. It needs no cluster access.")
        probed_cut = probe(lab, "without keepalive") == 4
        say("Exit 4: the second request got no answer; the balancer had forgotten the flow."
            if probed_cut else "Unexpected: the probe was not cut.")

        step("3. The fix: kubectl keepalive enable")
        say("Probe after 2s of silence, every 2s, reset after 3 unanswered probes: all well "
            "under the balancer's 5s.")
        shell(kubeconfig, "kubectl", "keepalive", "enable", "-y", "-n", NAMESPACE, "-l",
              SELECTOR, "--idle", "2s", "--interval", "2s", "--probes", "3")
        say("The plugin wrote one EnvoyFilter, rolled the gateway Deployment (a new ReplicaSet, "
            "as `kubectl rollout restart` does), waited for the rollout, and read each new pod's "
            "Envoy admin to check the options are live.")
        say("istiod turned the filter into the listener's socket_options and pushed it to the "
            "new pod's Envoy. The balancer now sends to the new pod.")
        lab.retarget(labctl.single_pod_netns(kubeconfig, NAMESPACE, SELECTOR))

        step("4. Status after the fix")
        shell(kubeconfig, "kubectl", "keepalive", "status", "-n", NAMESPACE, "-l", SELECTOR)

        step("5. The same long request")
        with lab.capture() as capture:
            pending = lab.start_request()
            time.sleep(3.0)
            sockets = [s for s in lab.gateway_sockets() if s.keepalive]
            result = pending.wait()
        saved = result.ok
        verdict = (f"200 OK after {result.seconds:.1f}s" if result.ok
                   else f"FAILED after {result.seconds:.1f}s: {result.error}")
        print(f"  with keepalive: {BOLD}{verdict}{RESET}", flush=True)
        to_gateway, through = capture.gateway_probes()
        print(f"  captured on the balancer: {len(to_gateway)} keepalive probes from the gateway, "
              f"{len(through)} of them passed on to the client, each refreshing the flow",
              flush=True)
        for sock in sockets or []:
            print(f"  ss -tno on the gateway, during the request: {sock.local} -> {sock.peer} "
                  f"timer:(keepalive,{sock.expires_s}s)", flush=True)

        step("5b. The same probe")
        probed_saved = probe(lab, "with keepalive") == 0
        say("Exit 0: the connection survived the silence; PROBES is how many keepalive probes "
            "from the gateway reached the client's kernel (TCP_INFO)." if probed_saved
            else "Unexpected: the probe was cut.")

        step("6. Clean-up")
        shell(kubeconfig, "kubectl", "keepalive", "disable", "-y", "-n", NAMESPACE, "-l",
              SELECTOR)
    elapsed = time.monotonic() - started
    say(f"Done in {elapsed:.0f}s. Without keepalive: {'cut' if cut else 'not cut'}. With it: "
        f"{'saved' if saved else 'NOT saved'}. Network namespaces removed.")
    return 0 if cut and saved and probed_cut and probed_saved else 1


if __name__ == "__main__":
    sys.exit(main())
