"""The port-forward and exec websockets through real proxies, on the real lab cluster.

The kubeconfig's `proxy-url` sends REST and every stream upgrade through the proxy (`httppool`
opens the websockets' sockets on the REST route). Each proxy here is a Debian package on
loopback: microsocks as a SOCKS5 proxy, open and with RFC 1929 credentials, and stunnel (TLS,
its certificate signed by the lab API server's CA, which the kubeconfig's CA then verifies, as
Go's net/http does for an https:// proxy) in front of tinyproxy. For each, `status -A` and
`doctor` (Envoy admin through port-forward) and `status -A --sockets` (`ss` through exec) must
give exactly what they give without the proxy, and the proxy's own log must show at least one
tunnel per websocket the command opened, plus its REST.

Through the proxy the kubeconfig names the API server by a name of its certificate that only
the proxy can resolve: each proxy runs in a mount namespace whose /etc/hosts has it, and the
clients in one whose resolver is loopback (no DNS query leaves the machine). A connection that
went around the proxy would fail, not pass unseen. The real kubectl goes through the same proxy
first: the oracle that the proxy, its certificate and the name are ones kubectl accepts. A
wrong SOCKS password, and an https:// proxy whose certificate comes from a CA the kubeconfig
does not trust, are each one `error:` line and exit 3, where kubectl fails too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Lab
from tests.support import processes
from tests.wire.recorder import free_port

pytestmark = pytest.mark.cluster

PROXY_USER = "jane"
# Each proxy process lives at most this long, whatever happens to the test.
PROXY_LIFETIME = 600
COMMAND_TIMEOUT = 120
DOCTOR = ("doctor", "-n", "istio-system", "--duration", "1h", "-o", "json")
STATUS = ("status", "-A", "-o", "json")
SOCKETS = ("status", "-A", "--sockets", "-o", "json")
# A name in the lab API server's certificate (kwok's pki) that this machine does not resolve.
API_NAME = "kubernetes.default.svc"
_BIND_AND_RUN = 'mount --bind "$0" "$1" && shift && exec "$@"'


@dataclass
class RunningProxy:
    """A proxy on loopback: the URL the kubeconfig gets and how its log counts tunnels."""

    url: str
    log: Path
    count: Callable[[str, str], int]  # (log text, target host:port) -> tunnels to the target

    def tunnels_during(self, target: str, action: Callable[[], Any]) -> tuple[Any, int]:
        """What `action` returns, and the tunnels to `target` the proxy logged meanwhile."""
        before = self._size()
        # Each proxy writes a tunnel's line before it answers the client, so before the
        # command can use the tunnel: no wait is needed after it.
        result = action()
        with self.log.open("rb") as fh:
            fh.seek(before)
            text = fh.read().decode("utf-8", "replace")
        return result, self.count(text, target)

    def _size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


def _microsocks_tunnels(text: str, target: str) -> int:
    # One line per connection the proxy made: "client[N] 127.0.0.1: connected to HOST:PORT".
    return sum(1 for line in text.splitlines() if line.endswith(f": connected to {target}"))


def _tinyproxy_tunnels(text: str, target: str) -> int:
    # One line per request: "... Request (file descriptor N): CONNECT HOST:PORT HTTP/1.1".
    return len(re.findall(rf"Request \(file descriptor \d+\): CONNECT {re.escape(target)} ",
                          text))


def _needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/netlab-deps.sh installs them)")


def _with_file(source: Path, target: str) -> list[str]:
    """The prefix that runs a command in a mount namespace of its own where `target` shows the
    contents of `source` (the machine's own file is untouched)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _BIND_AND_RUN,
            str(source), target]


def _proxy_hosts(folder: Path) -> list[str]:
    """The prefix under which a proxy resolves API_NAME to the lab API server's address."""
    hosts = folder / "proxy-hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {API_NAME}\n")
    return _with_file(hosts, "/etc/hosts")


def _client_resolver(folder: Path) -> list[str]:
    """The prefix under which a client's resolver asks loopback only, where nothing answers."""
    resolv = folder / "client-resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    return _with_file(resolv, "/etc/resolv.conf")


def _start(stack: contextlib.ExitStack, argv: list[str], output: Path, port: int,
           what: str) -> None:
    """`argv` (run with API_NAME in its /etc/hosts) bounded by `timeout`, its output appended
    to `output`, stopped by pid at the end of `stack`; returns once it listens on `port`."""
    prefix = _proxy_hosts(output.parent)
    with output.open("ab") as out:
        process = subprocess.Popen(["timeout", "-k", "5", str(PROXY_LIFETIME), *prefix, *argv],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    stack.callback(processes.stop, process)
    processes.wait_listening(port, what, process, output)


def _microsocks(stack: contextlib.ExitStack, folder: Path,
                password: str | None) -> RunningProxy:
    _needs("microsocks", "timeout", "unshare")
    port = free_port()
    log = folder / "microsocks.log"
    auth = ["-u", PROXY_USER, "-P", password] if password else []
    _start(stack, ["microsocks", "-i", "127.0.0.1", "-p", str(port), *auth], log, port,
           "microsocks")
    userinfo = f"{PROXY_USER}:{urllib.parse.quote(password, safe='')}@" if password else ""
    return RunningProxy(f"socks5://{userinfo}127.0.0.1:{port}", log, _microsocks_tunnels)


def _proxy_certificate(folder: Path, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 signed by the lab API server's own CA (the one the
    kubeconfig trusts); nothing is written next to the CA."""
    key, request, cert = folder / "proxy.key", folder / "proxy.csr", folder / "proxy.crt"
    extensions = folder / "proxy.ext"
    extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                          "keyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth\n"
                          "subjectAltName=IP:127.0.0.1\n"
                          "subjectKeyIdentifier=hash\n"
                          "authorityKeyIdentifier=keyid\n")
    for argv in (
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-subj", "/CN=keepalive-test https proxy",
         "-out", str(request)],
        ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert),
         "-CAkey", str(ca_key), "-set_serial", str(secrets.randbits(63)), "-days", "1",
         "-sha256", "-extfile", str(extensions), "-out", str(cert)],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return cert, key


def _other_ca(folder: Path) -> tuple[Path, Path]:
    """A CA of the test's own, which the lab kubeconfig does not trust."""
    cert, key = folder / "other-ca.crt", folder / "other-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                    "-subj", "/CN=keepalive-test other CA", "-days", "1", "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _https_proxy(stack: contextlib.ExitStack, folder: Path, kubeconfig: dict[str, Any],
                 api_port: int, trusted: bool = True) -> RunningProxy:
    """stunnel (TLS) in front of tinyproxy (CONNECT to the API server's port only); its
    certificate from the lab API server's CA, or (`trusted=False`) from another."""
    _needs("stunnel4", "tinyproxy", "openssl", "timeout", "unshare")
    ca_path = kubeconfig["clusters"][0]["cluster"].get("certificate-authority")
    assert ca_path, "the lab kubeconfig names its CA by file (lab/cluster-up.sh, kwok's pki)"
    ca_cert = Path(ca_path)
    ca_key = ca_cert.with_name("ca.key")
    assert ca_key.is_file(), f"no CA key beside {ca_cert}: kwok's pki keeps it there"
    if not trusted:
        ca_cert, ca_key = _other_ca(folder)
    cert, key = _proxy_certificate(folder, ca_cert, ca_key)

    tiny_port, tls_port = free_port(), free_port()
    log = folder / "tinyproxy.log"
    conf = folder / "tinyproxy.conf"
    conf.write_text(f'Port {tiny_port}\nListen 127.0.0.1\nTimeout 60\nLogFile "{log}"\n'
                    f"LogLevel Info\nMaxClients 64\nConnectPort {api_port}\n")
    _start(stack, ["tinyproxy", "-d", "-c", str(conf)], folder / "tinyproxy.out", tiny_port,
           "tinyproxy")
    stunnel_conf = folder / "stunnel.conf"
    stunnel_conf.write_text(f"foreground = yes\npid =\noutput = {folder / 'stunnel.log'}\n"
                            "debug = notice\n\n[https-proxy]\n"
                            f"accept = 127.0.0.1:{tls_port}\n"
                            f"connect = 127.0.0.1:{tiny_port}\n"
                            f"cert = {cert}\nkey = {key}\n")
    _start(stack, ["stunnel4", str(stunnel_conf)], folder / "stunnel.out", tls_port, "stunnel")
    return RunningProxy(f"https://127.0.0.1:{tls_port}", log, _tinyproxy_tunnels)


def _lab_config(lab: Lab) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(Path(lab.kubeconfig).read_text())
    return config


def _target(config: dict[str, Any]) -> tuple[str, int]:
    server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    assert server.hostname and server.port, server
    return server.hostname, server.port


def _proxied_kubeconfig(config: dict[str, Any], folder: Path, proxy_url: str) -> str:
    """The lab's kubeconfig with `proxy-url` on its cluster and the API server named API_NAME
    (the port kept), written into `folder`."""
    copy = json.loads(json.dumps(config))
    cluster = copy["clusters"][0]["cluster"]
    cluster["server"] = f"https://{API_NAME}:{_target(config)[1]}"
    cluster["proxy-url"] = proxy_url
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(copy))
    return str(path)


@dataclass(frozen=True)
class Client:
    """Runs kubectl and the plugin where API_NAME resolves nowhere: only a proxy reaches it."""

    lab: Lab
    kubeconfig: str
    prefix: tuple[str, ...]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *argv], env=self.lab.env(KUBECONFIG=self.kubeconfig),
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              stdin=subprocess.DEVNULL)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args)

    def keepalive(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", "keepalive", *args)


def _client(lab: Lab, config: dict[str, Any], folder: Path, proxy_url: str) -> Client:
    client = Client(lab, _proxied_kubeconfig(config, folder, proxy_url),
                    tuple(_client_resolver(folder)))
    resolved = client.run(sys.executable, "-c",
                          f"import socket; print(socket.getaddrinfo({API_NAME!r}, 443))")
    assert resolved.returncode != 0, f"{API_NAME} resolves without the proxy: {resolved.stdout}"
    return client


def _upgrades(command: tuple[str, ...], stdout: str) -> int:
    """The websockets the command opened, from what it reports: status reads each running pod's
    Envoy admin through one port-forward (and, with --sockets, runs `ss` through one exec);
    doctor reads one pod's full config dump per gateway it reports."""
    report = json.loads(stdout)
    if command[0] == "doctor":
        return len({(g["namespace"], g["name"]) for g in report["gateways"]})
    pods = [p for g in report["gateways"] for p in g["pods"]]
    forwards = sum(1 for p in pods if p["via"] == "port-forward")
    execs = sum(1 for p in pods if "--sockets" in command and p["sockets_error"] is None
                and p["error"] is None)
    return forwards + execs


@pytest.fixture(params=["socks5", "socks5-user", "https"])
def proxy(request: pytest.FixtureRequest, lab: Lab,
          tmp_path: Path) -> Iterator[tuple[RunningProxy, Client]]:
    """A running proxy of the kind named, and a client whose kubeconfig goes through it."""
    config = _lab_config(lab)
    with contextlib.ExitStack() as stack:
        if request.param == "https":
            running = _https_proxy(stack, tmp_path, config, _target(config)[1])
        else:
            password = secrets.token_urlsafe(12) if request.param == "socks5-user" else None
            running = _microsocks(stack, tmp_path, password)
        yield running, _client(lab, config, tmp_path, running.url)


def test_streams_through_the_proxy_match_the_direct_route(
        lab: Lab, proxy: tuple[RunningProxy, Client]) -> None:
    running, client = proxy
    target = f"{API_NAME}:{_target(_lab_config(lab))[1]}"
    oracle, tunnels = running.tunnels_during(
        target, lambda: client.kubectl("get", "--raw", "/readyz"))
    assert oracle.returncode == 0, ("kubectl fails through this proxy", oracle.stderr)
    assert tunnels >= 1, "kubectl's request did not show in the proxy's log"

    _wait_steady(lab)
    for command in (STATUS, DOCTOR, SOCKETS):
        direct = lab.keepalive(*command, timeout=COMMAND_TIMEOUT)
        proxied, tunnels = running.tunnels_during(target, functools.partial(client.keepalive,
                                                                            *command))
        if (proxied.returncode, proxied.stdout) != (direct.returncode, direct.stdout):
            # The lab may have moved between the two reads (an earlier test's listeners
            # drained away): the proxied read must then match a direct read just after it.
            direct = lab.keepalive(*command, timeout=COMMAND_TIMEOUT)
        assert direct.returncode in (0, 1), (command, direct.returncode, direct.stderr)
        assert (proxied.returncode, proxied.stdout) == (direct.returncode, direct.stdout), (
            command, proxied.stderr)
        assert "error:" not in proxied.stderr and "Traceback" not in proxied.stderr
        upgrades = _upgrades(command, proxied.stdout)
        assert upgrades >= 2, (command, "too few pods to tell streams from REST")
        # Every websocket is a connection of its own; REST adds at least one more.
        assert tunnels >= upgrades + 1, (command, tunnels, upgrades)


def _wait_steady(lab: Lab, timeout: float = 120.0) -> None:
    """Until no gateway pod's Envoy holds a listener other than active (an earlier test's
    change draining away), so that the direct and proxied reads see one lab."""
    deadline = time.monotonic() + timeout
    while True:
        done = lab.keepalive(*STATUS, timeout=COMMAND_TIMEOUT)
        states = {listener["state"] for gateway in json.loads(done.stdout or "{}").get(
            "gateways", []) for pod in gateway["pods"] for listener in pod["listeners"]}
        if done.returncode == 0 and states <= {"active"}:
            return
        assert time.monotonic() < deadline, f"listeners still {sorted(states)} after {timeout}s"
        time.sleep(2)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """Exit 3, nothing on stdout, one `error: ` line on stderr; that line."""
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_wrong_socks_password_is_one_error_line_and_exit_3(lab: Lab, tmp_path: Path) -> None:
    password = secrets.token_urlsafe(12)
    wrong = secrets.token_urlsafe(12)
    config = _lab_config(lab)
    target = f"{API_NAME}:{_target(config)[1]}"
    with contextlib.ExitStack() as stack:
        running = _microsocks(stack, tmp_path, password)
        right = _client(lab, config, tmp_path, running.url)
        oracle = right.kubectl("get", "--raw", "/readyz")
        assert oracle.returncode == 0, ("kubectl fails with the right password", oracle.stderr)
        bad_url = running.url.replace(urllib.parse.quote(password, safe=""), wrong)
        client = _client(lab, config, tmp_path, bad_url)
        oracle, _ = running.tunnels_during(target, lambda: client.kubectl("get", "--raw",
                                                                          "/readyz"))
        assert oracle.returncode != 0, "kubectl accepted a wrong SOCKS5 password"

        done, tunnels = running.tunnels_during(target, lambda: client.keepalive(*STATUS))
    line = _one_error_line(done)
    # It names the proxy (host:port, as kubectl does), never its user info.
    proxy_at = running.url.rpartition("@")[2].rstrip("/")
    assert f"SOCKS5 proxy {proxy_at} refused" in line, line
    assert "Traceback" not in done.stderr
    for secret in (password, wrong):
        assert secret not in done.stderr and secret not in done.stdout
    assert tunnels == 0, "the proxy connected to the API server for a refused client"


def test_https_proxy_with_a_certificate_the_kubeconfig_does_not_trust_is_refused(
        lab: Lab, tmp_path: Path) -> None:
    """TLS to an https:// proxy is checked against the API server's CA, as kubectl checks it:
    a proxy certificate from another CA fails both, before anything reaches the proxy."""
    config = _lab_config(lab)
    target = f"{API_NAME}:{_target(config)[1]}"
    with contextlib.ExitStack() as stack:
        running = _https_proxy(stack, tmp_path, config, _target(config)[1], trusted=False)
        client = _client(lab, config, tmp_path, running.url)
        oracle = client.kubectl("get", "--raw", "/readyz")
        assert oracle.returncode != 0, "kubectl trusted a proxy certificate of another CA"
        done, tunnels = running.tunnels_during(target, lambda: client.keepalive(*STATUS))
    line = _one_error_line(done)
    assert "proxy 127.0.0.1" in line, line  # the proxy is named, not the server
    assert tunnels == 0, "a CONNECT went through a proxy whose certificate failed the check"
