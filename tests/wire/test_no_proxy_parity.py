"""HTTPS_PROXY / HTTP_PROXY / NO_PROXY and proxy credentials as kubectl uses them.

kubectl and the plugin run inside a network namespace the test makes, where only loopback is
up: Debian's tinyproxy listens there and refuses every CONNECT (ConnectPort 1), and a direct
connection to any other address fails at once (no route), so nothing leaves the namespace and no
case waits. Whether each tool went through the proxy is read from tinyproxy's log: for every
case, the plugin must go through the proxy exactly when kubectl does. A second tinyproxy asks
for Basic credentials: the plugin's proxy credentials (proxy-url or HTTPS_PROXY user info,
percent-encoded too) must be accepted or refused as kubectl's are. kubectl is the oracle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import processes
from tests.wire.differential import KUBECTL

pytestmark = [pytest.mark.wire, pytest.mark.netns]

PROXY = "http://127.0.0.1:3128"
PROXY_PASSWORD = "secret-proxy-pw"
# (server, NO_PROXY): addresses in no route of the namespace, names under .test (RFC 6761).
CASES = [
    ("https://10.1.2.3:6443", ""),
    ("https://10.1.2.3:6443", "10.0.0.0/8"),
    ("https://10.1.2.3:6443", "10.0.0.0/8:6443"),
    ("https://10.1.2.3:6443", "10.0.0.0/8:443"),
    ("https://10.1.2.3:6443", " 10.0.0.0/8"),
    ("https://10.1.2.3:6443", "10.1.2.3"),
    ("https://10.1.2.3:6443", "10.1.2.3:6443"),
    ("https://10.1.2.3:6443", "10.1.2.3:443"),
    ("https://10.1.2.3:6443", "10.1.2.3:06443"),
    ("https://10.1.2.3:6443", "1.2.3"),
    ("https://[fd00::1]:6443", "[fd00::1]"),
    ("https://[fd00::1]:6443", "[fd00::1]:6443"),
    ("https://[fd00::1]:6443", "fd00::1"),
    ("https://[fd00::1]:6443", "fd00::/8"),
    ("https://[fd00::1]:6443", "[fd00::]/8"),
    ("https://[::ffff:127.0.0.1]:6443", ""),
    ("https://[::ffff:10.1.2.3]:6443", "10.1.2.3"),
    ("https://[::ffff:10.1.2.3]:6443", "10.0.0.0/8"),
    ("https://10.1.2.3:6443", "::ffff:10.1.2.3"),
    ("https://api.wire.test:6443", "wire.test"),
    ("https://api.wire.test:6443", ".wire.test"),
    ("https://api.wire.test:6443", "*.wire.test"),
    ("https://wire.test:6443", ".wire.test"),
    ("https://wire.test:6443", "*.wire.test"),
    ("https://wire.test:6443", "wire.test:"),
    ("https://wire.test:6443", "wire.test:6443"),
    ("https://wire.test:6443", "wire.test:443"),
    ("https://wire.test:6443", "WIRE.TEST"),
    ("https://WIRE.test:6443", "wire.test"),
    ("https://wire.test:6443", " wire.test ,other.test"),
    ("https://wire.test:6443", "*"),
    ("https://wire.test:6443", "other.test,*"),
    ("https://bücher.test:6443", "xn--bcher-kva.test"),
    ("https://bücher.test:6443", ""),
    ("https://xn--bcher-kva.test:6443", "bücher.test"),
    ("https://LOCALHOST:6443", ""),
    ("https://localhost.:6443", ""),
    ("https://127.0.0.2:6443", ""),
    ("http://10.1.2.3:8080", ""),
    ("http://10.1.2.3:8080", "10.1.2.3:8080"),
    ("http://10.1.2.3:8080", "10.1.2.3:80"),
]
IDS = [f"{server}|{no_proxy}" for server, no_proxy in CASES]


class ProxyNamespace:
    """A network namespace with loopback up and tinyproxy in it, removed on stop."""

    def __init__(self, folder: Path) -> None:
        self.name = f"kkw-{os.getpid()}-proxy"
        self.folder = folder
        self.log = folder / "tinyproxy.log"
        self._proxies: list[subprocess.Popen[bytes]] = []

    def start(self) -> ProxyNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=30)
        self.exec(["ip", "link", "set", "lo", "up"], check=True)
        # 3128 open to all; 3129 asks for Basic credentials (jane, PROXY_PASSWORD). One log.
        for port, extra in ((3128, ""), (3129, f"BasicAuth jane {PROXY_PASSWORD}\n")):
            conf = self.folder / f"tinyproxy-{port}.conf"
            conf.write_text(f'Port {port}\nListen 127.0.0.1\nTimeout 5\nLogFile "{self.log}"\n'
                            f"LogLevel Info\nMaxClients 20\nConnectPort 1\n{extra}")
            self._proxies.append(subprocess.Popen(
                ["ip", "netns", "exec", self.name, "tinyproxy", "-d", "-c", str(conf)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 10
            while "Connect (file descriptor" not in self.probe(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start on {port} in the namespace")
                time.sleep(0.05)
            self.log.write_bytes(b"")
        return self

    def probe(self, port: int) -> str:
        """Connect once to a proxy (loopback of the namespace), so the log says it runs."""
        self.exec([sys.executable, "-c", "import socket; socket.create_connection("
                   f"('127.0.0.1', {port}), 1).close()"])
        return self.log.read_bytes().decode("utf-8", "replace") if self.log.exists() else ""

    def exec(self, command: list[str], check: bool = False,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ip", "netns", "exec", self.name, *command], env=env,
                              capture_output=True, timeout=60, check=check)

    def stop(self) -> None:
        for proxy in self._proxies:
            processes.stop(proxy)
        subprocess.run(["ip", "netns", "del", self.name], timeout=30, check=False)

    def proxied(self, command: list[str], env: dict[str, str]) -> tuple[list[str], str]:
        """Run `command` in the namespace; (what it asked the proxy for, its stderr)."""
        before = len(self.log.read_bytes()) if self.log.exists() else 0
        done = self.exec(command, env=env)
        text = self.log.read_bytes()[before:].decode("utf-8", "replace")
        asked = [_target(line.partition("): ")[2]) for line in text.splitlines()
                 if "Request (file descriptor" in line]
        # tinyproxy checks the port only once it has accepted the credentials
        asked += [line.partition("]: ")[2] for line in text.splitlines()
                  if "Refused CONNECT method" in line]
        return asked, done.stderr.decode(errors="replace")


def _target(request_line: str) -> str:
    """`CONNECT host:port` or `GET http://host:port`: the method and where to, case folded
    (DNS names are case-insensitive); the path and query are the command's own."""
    method, _, rest = request_line.partition(" ")
    where = rest.split(" ")[0]
    scheme, sep, tail = where.partition("://")
    where = f"{scheme}{sep}{tail.partition('/')[0]}" if sep else where
    return f"{method} {where.lower()}"


@pytest.fixture(scope="module")
def proxy_namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyNamespace]:
    missing = [tool for tool in ("ip", "tinyproxy") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(missing) or 'ip'} "
                    "(scripts/netlab-deps.sh installs them)")
    lab = ProxyNamespace(tmp_path_factory.mktemp("proxy")).start()
    yield lab
    lab.stop()


@pytest.mark.parametrize(("server", "no_proxy"), CASES, ids=IDS)
def test_the_plugin_uses_the_proxy_when_kubectl_does(
        server: str, no_proxy: str, proxy_namespace: ProxyNamespace, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server,
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }, allow_unicode=True))
    (tmp_path / "home").mkdir()
    env = {"HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY, "NO_PROXY": no_proxy}
    flags = ["--kubeconfig", str(config), "--request-timeout", "5s"]
    kubectl, kubectl_err = proxy_namespace.proxied(
        [str(KUBECTL), *flags, "get", "--raw", "/api/v1/namespaces/x/pods"], env)
    plugin, plugin_err = proxy_namespace.proxied(
        [sys.executable, "-m", "kubectl_keepalive", *flags, "-n", "x", "status"], env)
    assert plugin == kubectl, (
        f"kubectl asked the proxy for {kubectl}, the plugin for {plugin}\n"
        f"kubectl: {kubectl_err[-600:]}\nplugin: {plugin_err[-600:]}")


# proxy-url or HTTPS_PROXY naming the proxy that asks for jane's password.
AUTH_CASES = [
    ("proxy-url", f"http://jane:{PROXY_PASSWORD}@127.0.0.1:3129"),
    ("proxy-url", "http://jane:wrong@127.0.0.1:3129"),
    ("proxy-url", "http://127.0.0.1:3129"),
    ("proxy-url", "http://jane@127.0.0.1:3129"),
    ("proxy-url", "http://jane:secret%2Dproxy%2Dpw@127.0.0.1:3129"),
    ("HTTPS_PROXY", f"http://jane:{PROXY_PASSWORD}@127.0.0.1:3129"),
    ("HTTPS_PROXY", f"jane:{PROXY_PASSWORD}@127.0.0.1:3129"),
]


@pytest.mark.parametrize(("where", "proxy"), AUTH_CASES,
                         ids=[f"{w}|{p}" for w, p in AUTH_CASES])
def test_the_plugin_authenticates_to_the_proxy_as_kubectl_does(
        where: str, proxy: str, proxy_namespace: ProxyNamespace, tmp_path: Path) -> None:
    cluster: dict[str, object] = {"server": "https://10.1.2.3:6443",
                                  "insecure-skip-tls-verify": True}
    if where == "proxy-url":
        cluster["proxy-url"] = proxy
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    (tmp_path / "home").mkdir()
    env = {"HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if where == "HTTPS_PROXY":
        env["HTTPS_PROXY"] = proxy
    flags = ["--kubeconfig", str(config), "--request-timeout", "5s"]
    kubectl, kubectl_err = proxy_namespace.proxied(
        [str(KUBECTL), *flags, "get", "--raw", "/api/v1/namespaces/x/pods"], env)
    plugin, plugin_err = proxy_namespace.proxied(
        [sys.executable, "-m", "kubectl_keepalive", *flags, "-n", "x", "status"], env)
    # Both asked the proxy; whether it took the credentials shows in its "Refused" line.
    assert kubectl and plugin, (kubectl_err, plugin_err)
    assert plugin == kubectl, (
        f"kubectl's proxy log {kubectl}, the plugin's {plugin}\n"
        f"kubectl: {kubectl_err[-600:]}\nplugin: {plugin_err[-600:]}")
    assert PROXY_PASSWORD not in plugin_err
