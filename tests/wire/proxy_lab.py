"""Real proxies on loopback for the wire tier, from Debian's packages, each with its own log.

- `dante`: Dante's danted, SOCKS5 without authentication (names resolved by the proxy).
- `socks_auth`: microsocks, SOCKS5 asking for a user and password (RFC 1929); Dante's username
  method would need a system account.
- `https`, `https_other`, `https_mtls`, `https_auth`: stunnel's TLS in front of tinyproxy, an
  https:// proxy; its certificate signed by the test CA, by the other CA, asking for a client
  certificate of the test CA, and in front of a tinyproxy asking for Basic credentials.

Every process is started on a free loopback port, waited for, and killed by pid on stop.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import processes
from tests.wire import pki as pki_module
from tests.wire.pki import Pki
from tests.wire.recorder import free_port

SOCKS_USER = "jane"
SOCKS_PASSWORD = "socks-secret-pw"
PROXY_PASSWORD = "proxy-secret-pw"
TOOLS = ("danted", "microsocks", "stunnel", "tinyproxy")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class ProxyLab:
    def __init__(self, folder: Path, pki: Pki) -> None:
        self.folder = folder
        self.pki = pki
        self.ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> ProxyLab:
        try:
            self._dante()
            self._microsocks()
            tiny, tiny_auth = self._tinyproxy("tinyproxy", ""), self._tinyproxy(
                "tinyproxy-auth", f"BasicAuth jane {PROXY_PASSWORD}\n")
            self._stunnel(tiny, tiny_auth)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, command: list[str], log: Path | None = None) -> None:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child owns it)
        try:
            self._processes.append(subprocess.Popen(command, stdout=out,
                                                    stderr=subprocess.STDOUT))
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        processes.wait_listening(self.ports[name], name)

    def _dante(self) -> None:
        port, log = free_port(), self.folder / "danted.log"
        self.ports["dante"], self.logs["dante"] = port, log
        conf = self.folder / "danted.conf"
        conf.write_text(
            f"logoutput: {log}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n"
            "socksmethod: none\nclientmethod: none\nuser.unprivileged: nobody\n"
            "client pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: error\n}\n"
            "socks pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  command: connect\n"
            "  log: connect error\n}\n")
        self._spawn("dante", ["danted", "-f", str(conf), "-N", "1"])

    def _microsocks(self) -> None:
        port, log = free_port(), self.folder / "microsocks.log"
        self.ports["socks_auth"], self.logs["socks_auth"] = port, log
        self._spawn("socks_auth", ["microsocks", "-i", "127.0.0.1", "-p", str(port), "-u",
                                   SOCKS_USER, "-P", SOCKS_PASSWORD], log)

    def _tinyproxy(self, name: str, extra: str) -> int:
        port, log = free_port(), self.folder / f"{name}.log"
        self.ports[name], self.logs[name] = port, log
        conf = self.folder / f"{name}.conf"
        conf.write_text(f'Port {port}\nListen 127.0.0.1\nTimeout 10\nLogFile "{log}"\n'
                        f"LogLevel Info\nMaxClients 20\n{extra}")
        self._spawn(name, ["tinyproxy", "-d", "-c", str(conf)])
        return port

    def _stunnel(self, tiny: int, tiny_auth: int) -> None:
        other = pki_module.server_pair(self.folder, self.pki.other_ca, "proxy-other")
        right = self.pki.server
        services = {
            "https": (right, tiny, ""),
            "https_other": (other, tiny, ""),
            "https_mtls": (right, tiny, f"verifyChain = yes\nrequireCert = yes\n"
                                        f"CAfile = {self.pki.ca.cert}\n"),
            "https_auth": (right, tiny_auth, ""),
        }
        log = self.folder / "stunnel.log"
        lines = ["foreground = yes", "pid =", f"output = {log}", "debug = 5"]
        for name, (pair, backend, extra) in services.items():
            self.ports[name], self.logs[name] = free_port(), log
            lines += [f"[{name}]", f"accept = 127.0.0.1:{self.ports[name]}",
                      f"connect = 127.0.0.1:{backend}", f"cert = {pair.cert}",
                      f"key = {pair.key}", extra]
        conf = self.folder / "stunnel.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._spawn("https", ["stunnel", str(conf)])
        for name in services:
            processes.wait_listening(self.ports[name], name)

    def log_size(self, name: str) -> int:
        path = self.logs[name]
        return path.stat().st_size if path.exists() else 0

    def log_since(self, name: str, offset: int) -> str:
        path = self.logs[name]
        if not path.exists():
            return ""
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")

    def stop(self) -> None:
        for process in self._processes:
            processes.stop(process)
        self._processes.clear()
