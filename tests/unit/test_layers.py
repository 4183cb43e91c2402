"""The package's layers, read from the imports themselves: a module imports only from its own
layer or the layers below it (ARCHITECTURE.md). Every import counts, also one inside a function
or under TYPE_CHECKING, since each is a dependency a reader has to know about."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kubectl_keepalive"
ROOT = "kubectl_keepalive"

# Top first. Modules directly in the package (model, errors, durations, __init__) are the shared
# bottom; the client under kube/ sits below kube's own verbs.
LAYERS = ("cli", "usecases", "doctor", "probe", "istio", "envoy", "kube", "kube.client")
SHARED = 0
# What the Kubernetes client may take from the shared bottom: it knows nothing of Istio or
# keepalive, so not the model; errors for its refusals, the package for its version string,
# terminal for the server text it quotes in them.
CLIENT_MAY_USE = {ROOT, f"{ROOT}.errors", f"{ROOT}.terminal"}
# The use cases reach a cluster through the protocol in kube/cluster.py, never its adapter.
USECASES_MAY_NOT_USE = (f"{ROOT}.kube.api", f"{ROOT}.kube.client")


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to, or None for the shared bottom."""
    if module == f"{ROOT}.__main__":
        return "cli"  # `python -m kubectl_keepalive` is the command line too
    rest = module[len(ROOT) + 1:] if module.startswith(ROOT + ".") else ""
    found = None
    for name in LAYERS:
        if rest == name or rest.startswith(name + "."):
            found = name  # the longest match wins: kube.client over kube
    return found


def rank(module: str) -> int:
    layer = layer_of(module)
    return SHARED if layer is None else len(LAYERS) - LAYERS.index(layer)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for each import of the package's own code."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                # `from pkg import module` names a module; `from module import name` does not
                candidate = f"{target}.{alias.name}"
                yield node.lineno, candidate if is_module(candidate) else target


def is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(module: str, source: str, is_package: bool) -> list[str]:
    found = []
    for line, target in imports(source, module, is_package):
        where = f"{module}:{line} imports {target}"
        if rank(target) > rank(module):
            found.append(f"{where}: a lower layer may not import a higher one")
        if layer_of(module) == "kube.client" and layer_of(target) is None \
                and target not in CLIENT_MAY_USE:
            found.append(f"{where}: the Kubernetes client knows nothing of the plugin's model")
        if layer_of(module) == "probe" and layer_of(target) not in (None, "probe"):
            found.append(f"{where}: the probe's socket work knows nothing of Kubernetes or Istio")
        if layer_of(module) == "usecases" and target.startswith(USECASES_MAY_NOT_USE):
            found.append(f"{where}: use cases reach the cluster through kube.cluster's protocol")
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_import_runs_down_the_layers() -> None:
    problems = [problem for path in sources()
                for problem in violations(module_name(path), path.read_text(),
                                          path.name == "__init__.py")]
    assert problems == []


def test_every_module_is_in_a_known_layer_and_every_layer_says_its_rule() -> None:
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")} - {ROOT}
    assert packages == {f"{ROOT}.{name}" for name in LAYERS}
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse(
            (PACKAGE.joinpath(*name.split(".")) / "__init__.py").read_text()))
        assert doc and "import" in doc, f"{name}/__init__.py must state what it may import"
    shared = {module_name(p) for p in PACKAGE.glob("*.py")}
    assert shared == {ROOT, f"{ROOT}.__main__", f"{ROOT}.model", f"{ROOT}.errors",
                      f"{ROOT}.durations", f"{ROOT}.terminal"}


@pytest.mark.parametrize(("module", "source", "why"), [
    (f"{ROOT}.kube.client.transport", "from kubectl_keepalive.istio import discovery",
     "higher"),
    (f"{ROOT}.kube.client.transport", "from kubectl_keepalive.model import Pod", "model"),
    (f"{ROOT}.envoy.sockopts", "def f():\n    from kubectl_keepalive.cli import render\n",
     "higher"),
    (f"{ROOT}.usecases.applying", "from kubectl_keepalive.kube.api import KubeCluster",
     "protocol"),
    (f"{ROOT}.doctor.render", "from ..usecases import app", "higher"),
    (f"{ROOT}.model", "import kubectl_keepalive.envoy.sockopts", "higher"),
    (f"{ROOT}.probe.wire", "from kubectl_keepalive.kube.client import proxies", "Kubernetes"),
])
def test_the_checker_catches_an_import_that_runs_up(module: str, source: str, why: str) -> None:
    found = violations(module, source, is_package=False)
    assert len(found) == 1 and why in found[0]


def test_the_checker_lets_downward_imports_pass() -> None:
    assert violations(f"{ROOT}.cli.commands",
                      "from kubectl_keepalive.kube.client import kubeconfig\n"
                      "from kubectl_keepalive.errors import UsageError", False) == []
    assert violations(f"{ROOT}.doctor.analysis", "from .balancers import Balancer", False) == []
