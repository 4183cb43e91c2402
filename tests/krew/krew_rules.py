"""krew's rules for a plugin manifest and its archive, applied by the project's own tests.

From kubernetes-sigs/krew `internal/index/validation/validate.go` and
`cmd/validate-krew-manifest`: name, semver, platforms with non-empty selectors, uri, lowercase
sha256, bin; archives without symlinks or `..`; a LICENSE among the installed files.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[\w-]+$")
SEMVER = re.compile(
    r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)
SHA256 = re.compile(r"^[a-f0-9]{64}$")


def manifest_errors(manifest: dict[str, Any]) -> list[str]:
    errors = []
    if manifest.get("apiVersion") != "krew.googlecontainertools.github.com/v1alpha2":
        errors.append("apiVersion")
    if manifest.get("kind") != "Plugin":
        errors.append("kind")
    name = (manifest.get("metadata") or {}).get("name", "")
    if not NAME.match(str(name)):
        errors.append(f"name {name!r}")
    spec = manifest.get("spec") or {}
    if not SEMVER.match(str(spec.get("version", ""))):
        errors.append(f"version {spec.get('version')!r}")
    if not spec.get("shortDescription"):
        errors.append("shortDescription")
    platforms = spec.get("platforms") or []
    if not platforms:
        errors.append("no platforms")
    for index, platform in enumerate(platforms):
        selector = platform.get("selector") or {}
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errors.append(f"platform {index}: empty selector")
        if not platform.get("uri"):
            errors.append(f"platform {index}: uri")
        if not SHA256.match(str(platform.get("sha256", ""))):
            errors.append(f"platform {index}: sha256 {platform.get('sha256')!r}")
        if not platform.get("bin"):
            errors.append(f"platform {index}: bin")
        files = platform.get("files") or []
        if not any("LICENSE" in str(f.get("from", "")) for f in files):
            errors.append(f"platform {index}: no LICENSE among the installed files")
    return errors


def archive_errors(archive: Path, bin_name: str) -> list[str]:
    errors = []
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    for name, member in members.items():
        if member.issym() or member.islnk():
            errors.append(f"{name}: link")
        if name.startswith("/") or ".." in Path(name).parts:
            errors.append(f"{name}: escapes the install directory")
    if "LICENSE" not in members:
        errors.append("no LICENSE")
    binary = members.get(bin_name)
    if binary is None or not binary.mode & 0o111:
        errors.append(f"{bin_name}: missing or not executable")
    return errors
