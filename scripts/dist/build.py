"""Build the krew archive `dist/kubectl-keepalive.tar.gz` and `plugin.yaml`, reproducibly.

The archive holds `kubectl-keepalive`, a zip application (a python3 shebang followed by a zip)
carrying the plugin and every runtime dependency as pure Python, and LICENSE. Dependencies are
downloaded at build time at the versions pinned in vendor.txt; nothing third-party is kept in
the repository. Same source, same bytes: fixed timestamps, sorted entries, fixed owners and
modes, gzip without a name or time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SHEBANG = b"#!/usr/bin/env python3\n"
# Parts of the vendored packages the plugin never imports: the client's asyncio half (it would
# need compiled packages) and test suites.
EXCLUDED_PREFIXES = ("kubernetes/aio/", "kubernetes/test/", "kubernetes/e2e_test/")
HOMEPAGE = "https://github.com/kubectl-keepalive/kubectl-keepalive"


def pinned() -> list[str]:
    lines = (HERE / "vendor.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def download(requirements: list[str], into: Path) -> None:
    pure = [r for r in requirements if not r.startswith("pyyaml")]
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into)]
    subprocess.run([*pip, "--only-binary=:all:", "--platform", "any", "--python-version",
                    "3.10", "--implementation", "py", *pure], check=True)
    # PyYAML ships no pure wheel; any of its wheels holds the pure-Python package beside the
    # C extension, which vendored_files leaves out (yaml falls back to pure Python without it).
    yaml = [r for r in requirements if r.startswith("pyyaml")]
    subprocess.run([*pip, "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
                    "--python-version", "3.11", "--implementation", "cp", *yaml], check=True)


def vendored_files(downloads: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for wheel in sorted(downloads.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith("/") or name.startswith(EXCLUDED_PREFIXES):
                    continue
                if name.endswith((".pyc", ".so", ".pyd", "/RECORD")) or name.startswith("_yaml"):
                    continue
                files[name] = archive.read(name)
    return files


def own_files() -> dict[str, bytes]:
    files = {}
    package = REPO / "src" / "kubectl_keepalive"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[str(path.relative_to(package.parent))] = path.read_bytes()
    files["__main__.py"] = (HERE / "launcher.py").read_bytes()
    return files


def zip_application(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever machine builds it
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def tar_gz(members: list[tuple[str, bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data, mode in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def version() -> str:
    namespace: dict[str, str] = {}
    exec((REPO / "src" / "kubectl_keepalive" / "__init__.py").read_text(), namespace)
    return namespace["__version__"]


def plugin_manifest(sha256: str, uri: str) -> str:
    """plugin.yaml: the manifest of this very archive (krew install --manifest --archive)."""
    return _manifest(f"v{version()}", f"uri: {uri}\n    sha256: {sha256}")


def release_template() -> str:
    """krew-manifest.yaml: what krew-release-bot renders for a tagged release."""
    url = f"{HOMEPAGE}/releases/download/{{{{ .TagName }}}}/kubectl-keepalive.tar.gz"
    return _manifest("{{ .TagName }}", f'{{{{addURIAndSha "{url}" .TagName}}}}')


def _manifest(tag: str, uri_and_sha: str) -> str:
    platforms = []
    for os_name in ("linux", "darwin"):
        for arch in ("amd64", "arm64"):
            platforms.append(
                f"""  - selector:
      matchLabels:
        os: {os_name}
        arch: {arch}
    {uri_and_sha}
    files:
    - from: kubectl-keepalive
      to: .
    - from: LICENSE
      to: .
    bin: kubectl-keepalive
""")
    return MANIFEST.format(tag=tag, homepage=HOMEPAGE, platforms="".join(platforms))


MANIFEST = """apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: keepalive
spec:
  version: {tag}
  homepage: {homepage}
  shortDescription: TCP keepalive on Istio ingress gateways, applied and verified
  description: |
    Turns on TCP keepalive on the downstream listeners of Istio ingress gateways,
    so that long requests survive the idle timeout of an L4 load balancer in
    front. Writes a MERGE EnvoyFilter with SO_KEEPALIVE, TCP_KEEPIDLE,
    TCP_KEEPINTVL and TCP_KEEPCNT, rolls the gateway, and checks in each pod's
    Envoy that the options are live. `status` shows keepalive per gateway, pod
    and listener; `doctor` lists every timer that can cut a long request.
  caveats: |
    Needs python3 >= 3.10 on PATH (the plugin is a Python zip application
    carrying its own dependencies) and Istio in the cluster.
    Applying the filter or rolling the gateway interrupts long requests in
    flight on the patched ports.
    Shell completion (kubectl >= 1.26): kubectl keepalive completion --install DIR
  platforms:
{platforms}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(REPO / "dist"))
    parser.add_argument("--manifest", default=str(REPO / "plugin.yaml"))
    parser.add_argument("--template", default=str(REPO / "krew-manifest.yaml"))
    parser.add_argument("--uri", default=f"{HOMEPAGE}/releases/download/v{version()}/"
                                         "kubectl-keepalive.tar.gz")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        download(pinned(), Path(tmp))
        files = {**vendored_files(Path(tmp)), **own_files()}
    application = zip_application(files)
    archive = tar_gz([("kubectl-keepalive", application, 0o755),
                      ("LICENSE", (REPO / "LICENSE").read_bytes(), 0o644)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kubectl-keepalive.tar.gz").write_bytes(archive)
    sha256 = hashlib.sha256(archive).hexdigest()
    Path(args.manifest).write_text(plugin_manifest(sha256, args.uri))
    Path(args.template).write_text(release_template())
    print(f"{out / 'kubectl-keepalive.tar.gz'} {len(archive)} bytes sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
