"""SOCKS5 and https:// proxies as kubectl uses them, through real proxies (tests/wire/proxy_lab).

For each case the real kubectl and the plugin run on one kubeconfig against the recording API
server, through Dante, microsocks or stunnel+tinyproxy on loopback. kubectl is the oracle:
the plugin must succeed exactly when kubectl does, send what kubectl sent (credentials, client
certificate, SNI, route), and ask the proxy for what kubectl asked it (read from the proxy's own
log: the target, as a name or an address, so names are resolved where kubectl resolves them).
When kubectl fails the plugin fails with one `error: ` line, exit 2 or 3. No proxy password
ever appears in the plugin's output, also with `-v 9`.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.wire import differential
from tests.wire.differential import Run, Shape
from tests.wire.pki import Pki
from tests.wire.proxy_lab import PROXY_PASSWORD, SOCKS_PASSWORD, SOCKS_USER, ProxyLab, missing_tools
from tests.wire.recorder import RecordingApiServer, Seen

pytestmark = pytest.mark.wire

UNRESOLVABLE = "api.nowhere.wire.test"  # no resolver here knows it: only a proxy may try
CA = {"certificate-authority-data": "{ca_data}"}


@dataclass(frozen=True)
class Case:
    """One kubeconfig cluster entry (`{placeholders}`: differential's and the proxy ports),
    the proxy log that tells what was asked, and optionally a user and environment."""

    id: str
    cluster: dict[str, Any]
    log: str
    user: dict[str, Any] = field(default_factory=lambda: {"token": "proxied-token"})
    env: dict[str, str] = field(default_factory=dict)


def socks(**cluster: Any) -> dict[str, Any]:
    return {"proxy-url": "socks5://127.0.0.1:{dante}", **CA, **cluster}


def https(proxy: str = "https", **cluster: Any) -> dict[str, Any]:
    return {"proxy-url": "https://127.0.0.1:{" + proxy + "}", **CA, **cluster}


ALICE = {"client-certificate-data": "{alice_crt_data}", "client-key-data": "{alice_key_data}"}
AUTH = f"{SOCKS_USER}:{SOCKS_PASSWORD}"
CASES = [
    # SOCKS5 through Dante: addresses and names, http and https servers, TLS details.
    Case("socks5-address", socks(server="{tls}"), "dante"),
    Case("socks5-localhost-name", socks(server="https://localhost:{tls_port}"), "dante"),
    Case("socks5-name-only-the-proxy-may-resolve",
         socks(server=f"https://{UNRESOLVABLE}:{{tls_port}}"), "dante"),
    Case("socks5-plain-http-server", {"server": "{plain}",
                                      "proxy-url": "socks5://127.0.0.1:{dante}"}, "dante"),
    Case("socks5-client-certificate", socks(server="{tls}"), "dante", user=ALICE),
    Case("socks5-tls-server-name", socks(server="{tls}", **{"tls-server-name":
                                                             "kube.wire.test"}), "dante"),
    Case("socks5-insecure", {"server": "{tls}", "insecure-skip-tls-verify": True,
                             "proxy-url": "socks5://127.0.0.1:{dante}"}, "dante"),
    Case("socks5-wrong-ca", {"server": "{tls}", "proxy-url": "socks5://127.0.0.1:{dante}",
                             "certificate-authority-data": "{other_ca_data}"}, "dante"),
    Case("socks5-closed-port", {"server": "{tls}", **CA,
                                "proxy-url": "socks5://127.0.0.1:{closed}"}, "dante"),
    Case("socks5-from-HTTPS_PROXY", {"server": f"https://{UNRESOLVABLE}:{{tls_port}}", **CA},
         "dante", env={"HTTPS_PROXY": "socks5://127.0.0.1:{dante}"}),
    Case("socks5-from-HTTPS_PROXY-NO_PROXY", {"server": f"https://{UNRESOLVABLE}:{{tls_port}}",
                                              **CA}, "dante",
         env={"HTTPS_PROXY": "socks5://127.0.0.1:{dante}", "NO_PROXY": "wire.test"}),
    Case("socks5h-scheme", {"server": "{tls}", **CA,
                            "proxy-url": "socks5h://127.0.0.1:{dante}"}, "dante"),
    Case("socks4-scheme", {"server": "{tls}", **CA,
                           "proxy-url": "socks4://127.0.0.1:{dante}"}, "dante"),
    Case("socks5h-from-HTTPS_PROXY", {"server": f"https://{UNRESOLVABLE}:{{tls_port}}", **CA},
         "dante", env={"HTTPS_PROXY": "socks5h://127.0.0.1:{dante}"}),
    # SOCKS5 with a user and password (RFC 1929) through microsocks.
    Case("socks5-user-password", {"server": "{tls}", **CA,
                                  "proxy-url": f"socks5://{AUTH}@127.0.0.1:{{socks_auth}}"},
         "socks_auth"),
    Case("socks5-wrong-password", {"server": "{tls}", **CA, "proxy-url":
                                   f"socks5://{SOCKS_USER}:wrong-pw@127.0.0.1:{{socks_auth}}"},
         "socks_auth"),
    Case("socks5-no-credentials", {"server": "{tls}", **CA,
                                   "proxy-url": "socks5://127.0.0.1:{socks_auth}"},
         "socks_auth"),
    Case("socks5-user-without-password", {"server": "{tls}", **CA, "proxy-url":
                                          f"socks5://{SOCKS_USER}@127.0.0.1:{{socks_auth}}"},
         "socks_auth"),
    Case("socks5-percent-encoded-password", {
        "server": "{tls}", **CA, "proxy-url": f"socks5://{SOCKS_USER}:"
        + "".join(f"%{ord(c):02X}" for c in SOCKS_PASSWORD) + "@127.0.0.1:{socks_auth}"},
         "socks_auth"),
    Case("socks5-user-password-from-HTTPS_PROXY", {"server": "https://localhost.:{tls_port}",
                                                   **CA}, "socks_auth",
         env={"HTTPS_PROXY": f"socks5://{AUTH}@127.0.0.1:{{socks_auth}}"}),
    # https:// proxies: stunnel's TLS in front of tinyproxy.
    Case("https-proxy", https(server="{tls}"), "tinyproxy"),
    Case("https-proxy-by-name", {"server": "{tls}", **CA,
                                 "proxy-url": "https://localhost:{https}"}, "tinyproxy"),
    Case("https-proxy-insecure", {"server": "{tls}", "insecure-skip-tls-verify": True,
                                  "proxy-url": "https://127.0.0.1:{https}"}, "tinyproxy"),
    Case("https-proxy-other-ca", https("https_other", server="{tls}"), "tinyproxy"),
    Case("https-proxy-system-cas", {"server": "{tls}",
                                    "proxy-url": "https://127.0.0.1:{https}"}, "tinyproxy"),
    Case("https-proxy-tls-server-name-in-its-certificate",
         https(server="{tls}", **{"tls-server-name": "kube.wire.test"}), "tinyproxy"),
    Case("https-proxy-tls-server-name-not-in-its-certificate",
         https(server="{tls}", **{"tls-server-name": "other.wire.test"}), "tinyproxy"),
    Case("https-proxy-plain-http-server", https(server="{plain}"), "tinyproxy"),
    Case("https-proxy-asks-for-a-client-certificate", https("https_mtls", server="{tls}"),
         "tinyproxy", user=ALICE),
    Case("https-proxy-asks-for-a-client-certificate-token-user",
         https("https_mtls", server="{tls}"), "tinyproxy"),
    Case("https-proxy-basic-credentials", {
        "server": "{tls}", **CA,
        "proxy-url": f"https://jane:{PROXY_PASSWORD}@127.0.0.1:{{https_auth}}"},
         "tinyproxy-auth"),
    Case("https-proxy-wrong-credentials", {
        "server": "{tls}", **CA, "proxy-url": "https://jane:wrong@127.0.0.1:{https_auth}"},
         "tinyproxy-auth"),
    Case("https-proxy-from-HTTPS_PROXY", {"server": f"https://{UNRESOLVABLE}:{{tls_port}}",
                                          **CA}, "tinyproxy",
         env={"HTTPS_PROXY": "https://127.0.0.1:{https}"}),
]


def _asked(log: str, text: str) -> set[str]:
    """What the proxy was asked to reach, from its log: host:port as the client named it."""
    if log == "dante":
        found = set(re.findall(r'could not resolve hostname "([^"]+)"', text))
        # at a session's start: "pass(1): tcp/connect [: CLIENT PROXY -> LOCAL TARGET"
        found |= set(re.findall(r"tcp/connect \[: \S+ \S+ -> \S+ (\S+)", text))
        return found
    if log == "socks_auth":
        return set(re.findall(r"connected to (\S+)", text))
    # tinyproxy: "Request (file descriptor N): CONNECT host:port HTTP/1.1" (or GET http://...)
    asked = set()
    for where in re.findall(r"Request \(file descriptor \d+\): (\S+ \S+)", text):
        method, _, target = where.partition(" ")
        scheme, sep, rest = target.partition("://")
        asked.add(f"{method} {scheme}{sep}{rest.partition('/')[0]}".lower())
    return asked


def _settled(lab: ProxyLab, log: str, offset: int) -> str:
    """The log's new text once it has stopped growing (proxies write when sessions end)."""
    text, quiet_since = lab.log_since(log, offset), time.monotonic()
    deadline = quiet_since + 3
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.3:
        time.sleep(0.05)
        now = lab.log_since(log, offset)
        if now != text:
            text, quiet_since = now, time.monotonic()
    return text


def _run(tool: str, case: Case, lab: ProxyLab, shape: Shape, api_server: RecordingApiServer,
         pki: Pki, folder: Path, extra: tuple[str, ...] = ()) -> tuple[Run, set[str]]:
    flags, env, _ = differential.prepare(shape, api_server, pki, folder)
    offset = lab.log_size(case.log)
    run = (differential.run_kubectl(flags, env, folder, api_server) if tool == "kubectl" else
           differential.run_plugin(flags, env, folder, api_server, extra))
    return run, _asked(case.log, _settled(lab, case.log, offset))


def _normal(seen: Seen) -> tuple[object, ...]:
    return (seen.scheme, seen.method, seen.path, seen.authorization, seen.client_subject,
            seen.sni)


def _show(run: Run, asked: set[str]) -> str:
    return f"exit {run.code}, asked the proxy {sorted(asked)}\nstderr: {run.stderr[-1200:]}\n" \
           f"seen: {run.seen}"


def test_the_case_table_covers_both_kinds_and_is_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert sum(case.log in ("dante", "socks_auth") for case in CASES) >= 15
    assert sum(case.log.startswith("tinyproxy") for case in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_plugin_goes_through_the_proxy_as_kubectl_does(
        case: Case, proxy_lab: ProxyLab, api_server: RecordingApiServer, pki: Pki,
        tmp_path: Path) -> None:
    differential.ensure_kubectl()
    ports = {name: str(port) for name, port in proxy_lab.ports.items()}
    config = differential.fill({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": case.cluster}],
        "users": [{"name": "u", "user": case.user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}, ports)
    shape = Shape(case.id, config, flags=("--request-timeout", "8s"),
                  env=differential.fill(dict(case.env), ports))
    kubectl, kubectl_asked = _run("kubectl", case, proxy_lab, shape, api_server, pki,
                                  tmp_path / "kubectl")
    plugin, plugin_asked = _run("plugin", case, proxy_lab, shape, api_server, pki,
                                tmp_path / "plugin")
    context = f"\nkubectl: {_show(kubectl, kubectl_asked)}\nplugin: {_show(plugin, plugin_asked)}"
    assert plugin_asked == kubectl_asked, "the proxy was asked otherwise" + context
    if kubectl.code == 0:
        assert kubectl.seen, "kubectl succeeded without a request" + context
        assert plugin.code == 0, "kubectl succeeded, the plugin did not" + context
        assert plugin.seen and all(_normal(seen) == _normal(kubectl.seen[0])
                                   for seen in plugin.seen[:1]), context
        wanted = _normal(kubectl.seen[0])[3:]
        assert all(_normal(seen)[3:] == wanted for seen in plugin.seen), context
    else:
        assert plugin.code in (2, 3), "kubectl failed, the plugin did not fail so" + context
        assert not plugin.seen, "kubectl failed, the plugin reached the server" + context
        lines = plugin.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context
    secrets = (SOCKS_PASSWORD, PROXY_PASSWORD)
    assert not any(s in plugin.stdout + plugin.stderr for s in secrets), context
    if any(s in str(config) for s in secrets) or any(s in str(case.env) for s in secrets):
        verbose, _ = _run("plugin", case, proxy_lab, shape, api_server, pki,
                          tmp_path / "verbose", ("-v", "9"))
        assert verbose.code == plugin.code, _show(verbose, set())
        assert not any(s in verbose.stdout + verbose.stderr for s in secrets), verbose.stderr


def test_no_proxy_process_outlives_the_lab(pki: Pki, tmp_path: Path) -> None:
    if missing_tools():
        pytest.skip("needs the proxies (scripts/netlab-deps.sh installs them)")
    lab = ProxyLab(tmp_path, pki).start()
    pids = [p.pid for p in lab._processes]
    lab.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
