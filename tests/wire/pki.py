"""Certificates for the wire tier, made with the openssl command line in a temporary folder.

One CA signs the API server's certificate (loopback addresses, `localhost` and a test name for
`tls-server-name`) and two client certificates; a second, unrelated CA is the wrong one.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "kube.wire.test"  # in the server certificate, for tls-server-name shapes
OTHER_NAME = "other.wire.test"  # in no certificate


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    def cert_b64(self) -> str:
        return base64.b64encode(self.cert.read_bytes()).decode()

    def key_b64(self) -> str:
        return base64.b64encode(self.key.read_bytes()).decode()


@dataclass(frozen=True)
class Pki:
    ca: Pair
    other_ca: Pair
    server: Pair
    alice: Pair  # CN=alice, O=devs: the kubeconfig's client certificate
    bob: Pair  # CN=bob: the exec plugin's client certificate


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> Pair:
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", f"/CN={name}", "-days", "2", "-keyout", str(pair.key),
         "-out", str(pair.cert), cwd=folder)
    return pair


def _leaf(folder: Path, ca: Pair, name: str, subject: str, extensions: str) -> Pair:
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    csr, ext = folder / f"{name}.csr", folder / f"{name}.ext"
    ext.write_text(extensions)
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", subject, "-keyout", str(pair.key), "-out", str(csr), cwd=folder)
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(pair.cert),
         cwd=folder)
    return pair


def make(folder: Path) -> Pki:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed (scripts/netlab-deps.sh installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = _ca(folder, "wire-ca"), _ca(folder, "other-ca")
    server = _leaf(folder, ca, "server", "/CN=wire-apiserver",
                   "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
                   f"subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:{SERVER_NAME}\n")
    client = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n"
    alice = _leaf(folder, ca, "alice", "/O=devs/CN=alice", client)
    bob = _leaf(folder, ca, "bob", "/CN=bob", client)
    return Pki(ca, other, server, alice, bob)


def server_pair(folder: Path, ca: Pair, name: str) -> Pair:
    """A server certificate signed by `ca` for the same names as the API server's (a proxy's
    certificate, by the right CA or the wrong one)."""
    return _leaf(folder, ca, name, f"/CN={name}",
                 "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
                 f"subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:{SERVER_NAME}\n")
