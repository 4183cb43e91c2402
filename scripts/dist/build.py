"""Build the krew archive `dist/kubectl-keepalive.tar.gz`, `plugin.yaml` and `krew-manifest.yaml`.

Layout of the archive:

    kubectl-keepalive   0755  launcher (scripts/dist/launcher): sh finds python3, then runs
                              itself as Python with -I -S, with lib/ alone on top of the stdlib
    lib/                      the plugin and every runtime dependency, pure Python
    LICENSE

Why a directory and not a zip application: from a zip nothing is cached as bytecode, so every
run compiles what it imports from source. From a directory, Python keeps `__pycache__` beside
the sources after the first run, as for any installed package (or, on a read-only install,
under the user's cache: see the launcher). Bytecode is not shipped: it is per Python minor
version, and the first run compiles only what that command imports (measured in
benchmarks/krew_startup.py).

Dependencies come from scripts/dist/requirements.txt (exact versions and hashes) at build time,
never from the repository. Same source, same bytes: entries sorted, one fixed mtime
(SOURCE_DATE_EPOCH, else 1980-01-01), owner 0:0 with empty names, fixed modes, and a gzip
header without name or time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
LAUNCHER = HERE / "launcher"
PACKAGE = REPO / "kubectl_keepalive"
HOMEPAGE = "https://github.com/kubectl-keepalive/kubectl-keepalive"
ARCHIVE_NAME = "kubectl-keepalive.tar.gz"
RELEASE_URL = f"{HOMEPAGE}/releases/download/{{tag}}/{ARCHIVE_NAME}"
# 1980-01-01: the oldest time every archive format and unzip tool agrees on.
DEFAULT_EPOCH = 315532800
# Read from their source archive rather than a wheel: no pure-Python wheel exists.
FROM_SOURCE = {"pyyaml"}
PLATFORMS = [(os_name, arch) for os_name in ("linux", "darwin") for arch in ("amd64", "arm64")]


@dataclass(frozen=True)
class Pin:
    name: str  # normalised: lower case, '-' for '_' and '.'
    version: str
    hashes: frozenset[str]
    line: str


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: Path = REQUIREMENTS) -> list[Pin]:
    found = []
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
            found.append(Pin(normalise(match.group(1)), match.group(2), hashes, line.strip()))
    return found


def download(cache: Path, wanted: list[Pin]) -> None:
    """Fetch into `cache` the pinned files it lacks. pip checks the hashes, and prepares
    metadata for a source archive (seconds), hence no pip at all when everything is cached."""
    missing = [pin for pin in wanted if cached(cache, pin) is None]
    if not missing:
        return
    cache.mkdir(parents=True, exist_ok=True)
    listed = cache / ".requirements.txt"
    listed.write_text("".join(f"{pin.line}\n" for pin in missing))
    no_binary = ",".join(sorted(FROM_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--require-hashes", "--dest", str(cache),
         # Pure-Python wheels only, as the oldest Python supported (3.9) on any platform
         # would accept them.
         "--only-binary=:all:", f"--no-binary={no_binary}", "--platform", "any",
         "--python-version", "3.9", "--implementation", "py",
         "--requirement", str(listed)],
        check=True, stdout=sys.stderr)


def cached(cache: Path, pin: Pin) -> Path | None:
    """The downloaded file of `pin` in `cache`, if its sha256 is one the pin allows."""
    if not cache.is_dir():
        return None
    for path in sorted(cache.iterdir()):
        if path.name.endswith(".whl"):
            name, version = path.name.split("-")[:2]
        elif path.name.endswith(".tar.gz"):
            name, _, version = path.name[: -len(".tar.gz")].rpartition("-")
        else:
            continue
        if normalise(name) == pin.name and version == pin.version and \
                hashlib.sha256(path.read_bytes()).hexdigest() in pin.hashes:
            return path
    return None


def find_download(cache: Path, pin: Pin) -> Path:
    path = cached(cache, pin)
    if path is None:
        raise SystemExit(f"error: {pin.name}=={pin.version} with a pinned hash is not in {cache}")
    return path


def skipped(name: str) -> bool:
    """Wheel members the plugin never needs: compiled files, tests, and install records that
    name files we leave out."""
    parts = name.split("/")
    return (
        name.endswith(("/", ".pyc", ".so", ".pyd", "/RECORD", "/INSTALLER", "/REQUESTED"))
        or parts[0].endswith(".data")
        or "tests" in parts[:-1]
        or parts[-1].endswith("_test.py")
    )


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not skipped(name)}


def source_files(sdist: Path, pin: Pin) -> dict[str, bytes]:
    """The pure-Python package of a source archive (setuptools `lib/` layout), its licence and
    metadata; the optional C accelerator is left out and the package falls back to Python."""
    files: dict[str, bytes] = {}
    info = f"{pin.name}-{pin.version}.dist-info/"
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 2:
                continue
            data = archive.extractfile(member)
            assert data is not None
            if parts[1:] == ["LICENSE"]:
                files[info + "LICENSE"] = data.read()
            elif parts[1:] == ["PKG-INFO"]:
                files[info + "METADATA"] = data.read()
            elif parts[1] == "lib" and len(parts) > 3 and parts[3].endswith(".py") and (
                    parts[2].isidentifier() and not parts[2].startswith("_")):
                files["/".join(parts[2:])] = data.read()
    if not any(name.endswith("/__init__.py") for name in files):
        raise SystemExit(f"error: no pure-Python package found in {sdist.name}")
    return files


def vendored(cache: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for pin in pins():
        path = find_download(cache, pin)
        found = source_files(path, pin) if pin.name in FROM_SOURCE else wheel_files(path)
        clash = files.keys() & found.keys()
        if clash:
            raise SystemExit(f"error: {pin.name} overwrites {sorted(clash)[:3]}")
        files.update(found)
    return files


def own_files() -> dict[str, bytes]:
    """The plugin's package as it is in the work tree (new modules need no `git add`)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[path.relative_to(PACKAGE.parent).as_posix()] = path.read_bytes()
    return files


def directories(paths: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def tar_gz(files: dict[str, tuple[bytes, int]], mtime: int) -> bytes:
    """A .tar.gz of `files` (name -> (bytes, mode)) whose bytes depend on nothing else."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries: dict[str, tuple[bytes, int] | None] = dict.fromkeys(directories(files))
        entries.update(files)
        for name in sorted(entries):
            content = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                data, info.mode = content
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def archive_files(cache: Path) -> dict[str, tuple[bytes, int]]:
    library = {**vendored(cache)}
    own = own_files()
    clash = library.keys() & own.keys()
    if clash:
        raise SystemExit(f"error: a dependency ships {sorted(clash)[:3]}")
    library.update(own)
    files = {f"lib/{name}": (data, 0o644) for name, data in library.items()}
    files["kubectl-keepalive"] = (LAUNCHER.read_bytes(), 0o755)
    files["LICENSE"] = ((REPO / "LICENSE").read_bytes(), 0o644)
    for name in files:
        # krew refuses any entry containing "..", even inside a file name.
        if ".." in name or name.startswith("/"):
            raise SystemExit(f"error: krew would refuse the archive entry {name!r}")
    return files


def version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text(), re.M)
    if not match:
        raise SystemExit("error: no __version__ in kubectl_keepalive/__init__.py")
    return match.group(1)


MANIFEST = """\
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: keepalive
spec:
  version: {version}
  homepage: {homepage}
  shortDescription: TCP keepalive on Istio ingress gateway listeners
  description: |
    Long requests through an L4 load balancer or NAT are cut when the client's
    TCP connection sits idle longer than the middlebox's idle timeout. This
    plugin turns on TCP keepalive on the downstream listeners of Istio ingress
    gateways: it writes a MERGE EnvoyFilter with SO_KEEPALIVE, TCP_KEEPIDLE,
    TCP_KEEPINTVL and TCP_KEEPCNT, rolls the gateway, and checks in each pod's
    Envoy that the options are live.

    `status` shows keepalive per gateway, pod and listener; `diff`, `enable` and
    `disable` manage the filter; `doctor` lists every timer that can cut a long
    request, which fires first, and the fix.
  caveats: |
    Needs python3 >= 3.9 on PATH (or KUBECTL_KEEPALIVE_PYTHON pointing at one);
    the plugin brings its own Python dependencies and ignores site-packages.
    Works on Istio ingress gateways (EnvoyFilter networking.istio.io/v1alpha3).

    Applying the filter, or rolling the gateway, interrupts long requests in
    flight on the patched ports: pick a quiet moment.

    Shell completion (kubectl >= 1.26):
      kubectl keepalive completion --install DIR   # a DIR on your PATH
  platforms:
{platforms}"""

PLATFORM = """\
  - selector:
      matchLabels:
        os: {os}
        arch: {arch}
    {uri_and_sha}
    files:
    - from: "*"
      to: "."
    bin: kubectl-keepalive
"""


def manifest(version_field: str, uri_and_sha: str) -> str:
    platforms = "".join(PLATFORM.format(os=os_name, arch=arch, uri_and_sha=uri_and_sha)
                        for os_name, arch in PLATFORMS)
    return MANIFEST.format(version=version_field, homepage=HOMEPAGE, platforms=platforms)


def plugin_manifest(uri: str, sha256: str) -> str:
    """plugin.yaml: the manifest of this very archive (`krew install --manifest --archive`)."""
    return manifest(f"v{version()}", f"uri: {uri}\n    sha256: {sha256}")


def release_template() -> str:
    """krew-manifest.yaml: krew-release-bot renders it for each tag; its `addURIAndSha` yields
    `uri:` and, four spaces in, `sha256:` of the asset it downloads."""
    url = RELEASE_URL.format(tag="{{ .TagName }}")
    return manifest("{{ .TagName }}", f'{{{{addURIAndSha "{url}" .TagName}}}}')


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_EPOCH


def default_cache() -> Path:
    root = os.environ.get("KEEPALIVE_CACHE") or os.path.expanduser("~/.cache/kubectl-keepalive")
    return Path(root) / "dist-downloads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the krew archive and its manifests.")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="archive directory")
    parser.add_argument("--manifest", type=Path, default=REPO / "plugin.yaml")
    parser.add_argument("--template", type=Path, default=REPO / "krew-manifest.yaml")
    parser.add_argument("--uri", help="archive URL in plugin.yaml (default: this version's "
                                      "release asset)")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="where pinned downloads are kept between builds")
    args = parser.parse_args(argv)
    download(args.cache, pins())
    archive = tar_gz(archive_files(args.cache), source_date_epoch())
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / ARCHIVE_NAME
    target.write_bytes(archive)
    sha256 = hashlib.sha256(archive).hexdigest()
    uri = args.uri or RELEASE_URL.format(tag=f"v{version()}")
    args.manifest.write_text(plugin_manifest(uri, sha256))
    args.template.write_text(release_template())
    print(f"{target}: {len(archive)} bytes, sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
