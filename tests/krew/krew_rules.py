"""krew's rules for a plugin manifest and its archive, as the project's own checks.

Restated (not copied) from kubernetes-sigs/krew v0.4.3: `internal/index/validation/validate.go`
(name, apiVersion, kind, short description, semver, platforms with uri, sha256, bin, files and
an os/arch selector), `cmd/validate-krew-manifest` (each selector matches a supported platform,
no two overlap, a LICENSE among the installed files) and `internal/download` (tar entries are
regular files or directories, no absolute path, nothing containing ".."). The project adds its
own: the four platforms it ships, the bin, caveats naming python3 >= 3.9 and Istio.

Every check returns a list of human-readable errors; an empty list means krew would accept it.
"""

from __future__ import annotations

import fnmatch
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

API_VERSION = "krew.googlecontainertools.github.com/v1alpha2"
NAME = re.compile(r"^[\w-]+$")
# Windows device names, refused as plugin names whatever the case.
WINDOWS_FORBIDDEN = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}
# Semantic version with krew's mandatory "v" (k8s.io/apimachinery ParseSemantic grammar).
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
SHA256 = re.compile(r"^[a-f0-9]{64}$")
# What validate-krew-manifest treats as a platform a selector may match.
SUPPORTED = [("windows", "386"), ("windows", "amd64"), ("windows", "arm64"), ("linux", "386"),
             ("linux", "amd64"), ("linux", "arm"), ("linux", "arm64"), ("darwin", "386"),
             ("darwin", "amd64"), ("darwin", "arm64")]
LICENSE_NAMES = {"license", "license.txt", "license.md", "licenses", "licenses.txt",
                 "licenses.md", "copying", "copying.txt"}
SHIPPED = {(os_name, arch) for os_name in ("linux", "darwin") for arch in ("amd64", "arm64")}
PLUGIN = "keepalive"
BIN = "kubectl-keepalive"


def _selector_errors(selector: Any) -> list[str]:
    if not isinstance(selector, Mapping):
        return ["no selector"]
    labels, expressions = selector.get("matchLabels"), selector.get("matchExpressions")
    if labels is None and not expressions:
        return ["empty selector"]
    errors = []
    keys = list(labels or {}) + [e.get("key") for e in expressions or [] if isinstance(e, dict)]
    errors += [f"selector key {key!r} is not os or arch" for key in keys if key not in
               ("os", "arch")]
    if labels is not None and not labels:
        errors.append("selector: matchLabels specified but empty")
    if expressions is not None and not expressions:
        errors.append("selector: matchExpressions specified but empty")
    return errors


def selects(selector: Mapping[str, Any], os_name: str, arch: str) -> bool:
    """Label-selector semantics for the two labels krew sets."""
    labels = {"os": os_name, "arch": arch}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = expression.get("key") in labels
        value = labels.get(expression.get("key"))
        values = expression.get("values") or []
        operator = expression.get("operator")
        if operator == "In" and value not in values:
            return False
        if operator == "NotIn" and value in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def manifest_errors(manifest: Any, file_name: str = f"{PLUGIN}.yaml") -> list[str]:
    """krew's rules for a manifest, plus the project's own."""
    if not isinstance(manifest, Mapping):
        return ["not a YAML mapping"]
    errors = []
    if manifest.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != "Plugin":
        errors.append(f"kind {manifest.get('kind')!r}")
    name = str((manifest.get("metadata") or {}).get("name", ""))
    if not NAME.match(name) or name.lower() in WINDOWS_FORBIDDEN:
        errors.append(f"name {name!r} not allowed")
    if name != file_name.removesuffix(".yaml") or name != PLUGIN:
        errors.append(f"name {name!r}: the plugin is {PLUGIN!r}, in {PLUGIN}.yaml")
    spec = manifest.get("spec") or {}
    short = str(spec.get("shortDescription") or "")
    if not short or "\n" in short or "\r" in short:
        errors.append("shortDescription must be one non-empty line")
    if not SEMVER.match(str(spec.get("version", ""))):
        errors.append(f"version {spec.get('version')!r} is not vMAJOR.MINOR.PATCH")
    if not str(spec.get("homepage", "")).startswith("https://"):
        errors.append("homepage")
    caveats = str(spec.get("caveats") or "")
    for needed in ("python3 >= 3.9", "Istio"):
        if needed not in caveats:
            errors.append(f"caveats do not name {needed!r}")
    platforms = spec.get("platforms") or []
    if not platforms:
        errors.append("no platforms")
    for index, platform in enumerate(platforms):
        errors += [f"platform {index}: {e}" for e in _platform_errors(platform)]
    errors += _coverage_errors([p.get("selector") or {} for p in platforms
                                if isinstance(p, Mapping)])
    return errors


def _platform_errors(platform: Any) -> list[str]:
    if not isinstance(platform, Mapping):
        return ["not a mapping"]
    errors = []
    if not str(platform.get("uri") or "").startswith(("https://", "http://")):
        errors.append(f"uri {platform.get('uri')!r}")
    if not SHA256.match(str(platform.get("sha256", ""))):
        errors.append(f"sha256 {platform.get('sha256')!r} is not 64 lowercase hex digits")
    if platform.get("bin") != BIN:
        errors.append(f"bin {platform.get('bin')!r}, expected {BIN!r}")
    files = platform.get("files")
    if files is not None:
        if not files:
            errors.append("files: empty (leave it out or list something)")
        for op in files or []:
            if not op.get("from") or not op.get("to"):
                errors.append(f"files: {op!r} needs from and to")
    errors += _selector_errors(platform.get("selector"))
    return errors


def _coverage_errors(selectors: list[Mapping[str, Any]]) -> list[str]:
    errors = []
    for index, selector in enumerate(selectors):
        if selector and not any(selects(selector, *pair) for pair in SUPPORTED):
            errors.append(f"platform {index}: selector matches no supported platform")
    for pair in SUPPORTED:
        matching = [i for i, s in enumerate(selectors) if s and selects(s, *pair)]
        if len(matching) > 1:
            errors.append(f"platforms {matching} overlap on {pair[0]}/{pair[1]}")
        if pair in SHIPPED and not matching:
            errors.append(f"no platform for {pair[0]}/{pair[1]}")
    return errors


def installed_files(members: list[str], files: list[Mapping[str, str]] | None) -> set[str]:
    """The top-level names krew moves into the install directory for a platform's `files`
    (no `files`: everything)."""
    tops = {m.split("/")[0] for m in members}
    if files is None:
        return tops
    moved: set[str] = set()
    for op in files:
        pattern = op["from"].strip("/")
        moved |= {m.split("/")[0] for m in members if fnmatch.fnmatchcase(m, pattern)}
    return moved


def archive_errors(archive: Path, platform: Mapping[str, Any]) -> list[str]:
    """krew's rules for the archive one platform installs."""
    errors = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError) as error:
        return [f"not a .tar.gz: {error}"]
    for member in members:
        if not (member.isfile() or member.isdir()):
            errors.append(f"{member.name}: neither a file nor a directory (krew refuses it)")
        if ".." in member.name or member.name.startswith(("/", "\\")):
            errors.append(f"{member.name}: suspicious path (krew refuses it)")
        if member.isdir() and member.mode & 0o700 != 0o700:
            errors.append(f"{member.name}: directory mode {oct(member.mode)}")
    names = [m.name.rstrip("/") for m in members]
    installed = installed_files(names, platform.get("files"))
    if not any(name.lower() in LICENSE_NAMES for name in installed):
        errors.append("no LICENSE among the installed files")
    binary = next((m for m in members if m.name == platform.get("bin")), None)
    if binary is None or not binary.isfile() or binary.name not in installed:
        errors.append(f"bin {platform.get('bin')!r} is not an installed file")
    elif binary.mode & 0o755 != 0o755:
        errors.append(f"bin {binary.name}: mode {oct(binary.mode)}, not executable by all")
    return errors


def reproducibility_errors(archive: Path) -> list[str]:
    """What makes two builds of the same source differ: order, times and owners."""
    errors = []
    with open(archive, "rb") as raw:
        header = raw.read(10)
    if header[4:8] != b"\0\0\0\0" or header[3] & 0x08:
        errors.append("gzip header carries a time or a file name")
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    if names != sorted(names):
        errors.append("entries are not sorted")
    if len({m.mtime for m in members}) != 1:
        errors.append("entries carry different times")
    owners = {(m.uid, m.gid, m.uname, m.gname) for m in members}
    if owners != {(0, 0, "", "")}:
        errors.append(f"owners {sorted(owners)[:3]}")
    return errors
