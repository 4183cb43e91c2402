#!/usr/bin/env python3
"""Restarts the lab's control-plane processes that exit, as a kubelet restarts static pods.

`kwokctl --runtime=binary` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok once and records each pid in ``<cluster dir>/pids/<binary>.pid``; nothing restarts them.
A real node's kubelet would: kube-controller-manager and kube-scheduler exit on purpose when they
lose their leader lease (a 20 s freeze of the API server is enough), and without them every later
rollout hangs. Every few seconds this process checks those pids; when one is gone it runs
`kwokctl start cluster`, which starts exactly the components that are not running (the others it
leaves alone), with a back-off between attempts as the kubelet's crash loop has. A stopped
(SIGSTOP) process is alive: it is left to whoever stopped it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

CHECK_EVERY_S = 2.0
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
BACKOFF_S = (2.0, 5.0, 10.0, 20.0, 40.0)  # after each restart that did not keep everything up


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} control-plane: {msg}", file=sys.stderr, flush=True)


def dead_components(cluster_dir: Path) -> list[str]:
    """Components whose recorded process is gone: no pid file, or no such process running that
    binary (a zombie has no cmdline). Nothing while the cluster has no pids folder (deleted)."""
    if not (cluster_dir / "pids").is_dir():
        return []
    dead = []
    # A component whose pid file is gone was forgotten by a restart that failed: still dead.
    names = {p.stem for p in (cluster_dir / "pids").glob("*.pid")} | set(COMPONENTS)
    for pid_file in sorted(cluster_dir / "pids" / f"{n}.pid" for n in names):
        name = pid_file.stem
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            dead.append(name)
            continue
        if name not in cmdline:  # the pid now belongs to something else
            dead.append(name)
    return dead


def forget(cluster_dir: Path, dead: list[str]) -> None:
    """Remove the dead components' pid files. kwokctl takes a pid that answers signal 0 for a
    running component, and a killed process stays a zombie until init reaps it (seconds here):
    kwokctl would start nothing and then wait minutes for an API server that is not there."""
    for name in dead:
        (cluster_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)


def restart(kwokctl: str, cluster: str) -> bool:
    # Output to this process's log, not a pipe: the components kwokctl forks must not hold it.
    try:
        done = subprocess.run([kwokctl, "--name", cluster, "start", "cluster", "--timeout", "2m"],
                              stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
                              timeout=180)
    except subprocess.TimeoutExpired:
        log("kwokctl start cluster timed out")
        return False
    if done.returncode != 0:
        log(f"kwokctl start cluster failed ({done.returncode})")
    return done.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", required=True)
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--kwokctl", default=os.environ.get("KEEPALIVE_KWOKCTL", "kwokctl"))
    parser.add_argument("--once", action="store_true",
                        help="restart what is dead now, then exit (cluster-up.sh on a running lab)")
    args = parser.parse_args()
    cluster_dir = Path(args.cluster_dir)
    if args.once:
        dead = dead_components(cluster_dir)
        if not dead:
            return 0
        log(f"exited: {', '.join(dead)}; restarting with kwokctl start cluster")
        forget(cluster_dir, dead)
        return 0 if restart(args.kwokctl, args.cluster_name) else 1
    failures = 0
    log(f"watching {cluster_dir / 'pids'}")
    while True:
        time.sleep(CHECK_EVERY_S)
        dead = dead_components(cluster_dir)
        if not dead:
            failures = 0
            continue
        log(f"exited: {', '.join(dead)}; restarting with kwokctl start cluster")
        forget(cluster_dir, dead)
        ok = restart(args.kwokctl, args.cluster_name)
        still = dead_components(cluster_dir)
        if ok and not still:
            log("restarted")
            failures = 0
            continue
        # Crash loop: wait longer each time, as the kubelet backs off a failing container.
        time.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
        failures += 1


if __name__ == "__main__":
    sys.exit(main())
