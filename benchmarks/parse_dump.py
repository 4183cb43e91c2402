"""Parsing: `status --from-file` on a generated 50 MB Envoy config dump; wall time and peak RSS.
Then the live read of one pod's dump as `status` does it (listeners and the stat prefixes of the
in-flight split): from one pruned parse, beside the two parses it took before (the pruned one
for listeners and a whole `json.loads` for the prefixes), interleaved in one run.

The dump is shaped like a large gateway's: many dynamic listeners, each with many filter chains
carrying HTTP connection manager configs, plus a clusters section. Targets: under 2 s and a peak
RSS under 4x the file size. Run: `make bench`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

TARGET_BYTES = 50 * 1024 * 1024


def listener(index: int, chains: int) -> dict[str, Any]:
    port = 10000 + index
    return {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": f"0.0.0.0_{port}",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "socket_options": [{"level": "1", "name": "9", "int_value": "1"},
                           {"level": "6", "name": "4", "int_value": "60"}],
        # Envoy >= 1.37 encodings, so the bench covers every path of the keepalive reader.
        "tcp_keepalive": {"keepalive_time": 60, "keepalive_interval": 10},
        "additional_addresses": [{"address": {"socket_address": {"address": "::",
                                                                 "port_value": port}},
                                  "socket_options": {}}],
        "filter_chains": [{
            "filter_chain_match": {"server_names": [f"host{index}-{c}.example.com"]},
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": f"outbound_{port}_{c}",
                    "rds": {"route_config_name": f"https.{port}.{c}"},
                    "http_filters": [{"name": f"filter-{f}", "typed_config": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "value": {"k": "v" * 40}}} for f in range(6)],
                },
            }],
        } for c in range(chains)],
    }


def write_dump(path: str) -> None:
    listeners = []
    size = 0
    index = 0
    while size < TARGET_BYTES:
        item = {"name": f"0.0.0.0_{10000 + index}",
                "active_state": {"version_info": "1", "listener": listener(index, 40)}}
        size += len(json.dumps(item))
        listeners.append(item)
        index += 1
    dump = {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
         "dynamic_listeners": listeners},
    ]}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(dump, handle)


def run_measured(argv: list[str]) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS in bytes (this child alone, via wait4) and stdout."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"error: {argv[0]} exited {child.returncode}")
        out.seek(0)
        return wall, usage.ru_maxrss * 1024, out.read()


def live_read(path: str, mode: str) -> None:
    """One pod's dump read as `status` reads it (`once`), or with the prefixes from a second,
    whole parse (`twice`)."""
    from kubectl_keepalive.envoy import envoy_dump, inflight

    with open(path, "rb") as handle:
        raw = handle.read()
    if mode == "once":
        document = envoy_dump.load(raw)
        listeners, prefixes = envoy_dump.parse_loaded(document, raw), \
            inflight.listener_prefixes(document)
    else:
        listeners, prefixes = envoy_dump.parse(raw), inflight.listener_prefixes(raw)
    print(len(listeners), len(prefixes))


def live_rows(path: str, size: int) -> None:
    runs: dict[str, list[tuple[float, int]]] = {"once": [], "twice": []}
    for _ in range(5):
        for mode in runs:
            wall, peak, out = run_measured([sys.executable, __file__, "--live", path, mode])
            runs[mode].append((wall, peak))
            assert out.split()[0] == out.split()[1], out  # a prefix for every listener
    print()
    print("| live read of one dump | wall (median of 5) | peak RSS | RSS / size |")
    print("|---|---|---|---|")
    for mode, label in (("twice", "two parses (before)"), ("once", "one pruned parse")):
        walls = sorted(r[0] for r in runs[mode])
        peak = max(r[1] for r in runs[mode])
        print(f"| {label} | {walls[2]:.2f} s | {peak / 2**20:.0f} MiB | {peak / size:.2f}x |")


def main() -> int:
    if sys.argv[1:2] == ["--write"]:
        write_dump(sys.argv[2])
        return 0
    if sys.argv[1:2] == ["--live"]:
        live_read(sys.argv[2], sys.argv[3])
        return 0
    plugin = shutil.which("kubectl-keepalive")
    if not plugin:
        print("error: kubectl-keepalive must be on PATH (make venv)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config_dump.json")
        # Written by a child so that this process stays small while it measures others.
        subprocess.run([sys.executable, __file__, "--write", path], check=True)
        size = os.path.getsize(path)
        runs = [run_measured([plugin, "status", "--from-file", path, "-o", "json"])
                for _ in range(3)]
        walls = sorted(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        listeners = sum(len(p["listeners"]) for g in json.loads(runs[-1][2])["gateways"]
                        for p in g["pods"])
        print("| dump size | listeners | wall (median of 3) | peak RSS | RSS / size |")
        print("|---|---|---|---|---|")
        print(f"| {size / 2**20:.1f} MiB | {listeners} | {walls[1]:.2f} s | "
              f"{peak / 2**20:.0f} MiB | {peak / size:.2f}x |")
        live_rows(path, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
