"""`status -o jsonpath=`, `-o custom-columns=` and `--sort-by` against kubectl's own code.

The oracle is tests/oracle/kubectl_output: a Go program over k8s.io/client-go's util/jsonpath,
k8s.io/cli-runtime's JSONPath printer and k8s.io/kubectl/pkg/cmd/get (custom columns, sorting),
at the lab's Kubernetes version. It is built from Go modules into the cache
(~/.cache/kubectl-keepalive/oracle/, keyed by its source) and fed the JSON document that
`status -o json` prints; the plugin's output over the same cluster must equal it byte for byte,
and an expression kubectl refuses must be refused (exit 2) with kubectl's first line. No expected
output is typed here. Without Go the tests skip, which CI=true turns into a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_output_golden import cli, enabled, lab_five

ORACLE_SRC = Path(__file__).resolve().parents[1] / "oracle" / "kubectl_output"
CACHE = Path(os.environ.get("KEEPALIVE_CACHE", Path.home() / ".cache" / "kubectl-keepalive"))

JSONPATHS = [
    "{.gateways[*].name}",
    '{range .gateways[*]}{.namespace}/{.name}{"\\n"}{end}',
    "{.gateways[0].envoyfilter}",
    "{.gateways[2].envoyfilter}",
    "{.gateways[0].pods[0].listeners[0].port}",
    "{.gateways[-1].name}",
    "{.gateways[1:3].name}",
    "{.gateways[0:5:2].name}",
    '{.gateways[?(@.namespace=="istio-system")].name}',
    "{.gateways[?(@.envoyfilter)].name}",
    "{.gateways[0,2].name}",
    "{.gateways[*]['name']}",
    "{.gateways[0].pods[0].listeners[0].keepalive}",
    "{.gateways[0].foreign_envoyfilters}",
    "{.gateways[0].pods[0].listeners[0].static}",
    "names: {.gateways[*].name} end",
    '{range .gateways[*]}[{.name}]{range .pods[*]}({.name}){end}{"\\n"}{end}',
    "{.gateways[?(@.pods[0].listeners[0].port==80)].name}",
    "{'literal'}",
    '{"tab\\there"}',
    "{.gateways[*].pods[*].listeners[*].keepalive.idle}",
    "{.gateways[0:0]}",
    "{.gateways[*].pods[*].listeners[?(@.port>8000)].port}",
    "{.gateways[?(@.name!=\"web-gateway-istio\")].namespace}",
    "{.gateways[*].pods[*].via}",
    "no action at all",
    "{$.gateways[0].name}",
    "{.gateways[0]['name']}",
    "{.gateways[*].pods[*].listeners[?(@.static==false)].port}",
    "{.gateways[*].pods[*].listeners[?(@.port>=8080)].name}",
    "{.gateways[*].pods[*].listeners[*].keepalive.enabled}",
    '{"caf\\u00e9 \\x41"}',
    "{.gateways[-2:].name}",
    "{.gateways[:2].name}",
    "{.gateways[?(@.revision=='canary')].name}",
    "{.gateways[0].pods[0].listeners[0].port} {.gateways[0].role}",
    "{.gateways[*].pods[*].listeners[?(@.keepalive.enabled==true)].port}",
    '{range .gateways[?(@.role=="ingress")]}{.name}{","}{end}',
    "{.gateways[0].pods[0].listeners[0].port.x}",
    "{.gateways[0].name[0]}",
    '{range .gateways[*]}{.name}{end}{" tail"}',
    "{.gateways[1:3:2].name}",
    "{.gateways[0].pods[0].listeners[*]['port','name']}",
    "{.nope}",
    "{.gateways[9]}",
    # kubectl refuses these: the first line of its error, exit 2
    "{.gateways[",
    "{.gateways[0].name",
    "{end}",
    "{.gateways[x]}",
    "{.gateways[0].name.foo}",
    "{.gateways[5:1]}",
    "{#}",
    "{.gateways[*].pods[*].listeners[?(@.sync==\"applied\")].name}",
    "{.gateways[0:3:0]}",
    "{..name..name}",
    '{.gateways[*].pods[*].listeners[?(@.port<"a")].port}',
]
# Missing keys as errors (--allow-missing-template-keys=false).
STRICT = ["{.nope}", "{.gateways[0].nope}", "{.gateways[*].name}", "{.gateways[9]}"]
# `..` walks maps in Go's random order: compared as sets of words.
UNORDERED = ["{..port}", "{..name}", "{..pods[0].name}"]
COLUMNS = [
    ("NAME:.name,NAMESPACE:.namespace", None),
    ("NAME:name,PODS:.pods[*].name", None),
    ("NAME:{.name},FILTER:{.envoyfilter}", None),
    ("GW:.name,ROLE:.role,REV:.revision", ".name"),
    ("GW:.name,PORTS:.pods[0].listeners[*].port", ".namespace"),
    ("GW:.name,KEEPALIVE:.pods[0].listeners[0].keepalive", "{.revision}"),
    ("GW:.name,FIRST:.pods[0].name", ".pods[0].name"),
    ("A:.name", ".envoyfilter"),
    ("A:.name", ".nope"),
    ("NAME", None),
    ("", None),
    ("A:.gateways[", None),
]


def _source_key() -> str:
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((ORACLE_SRC / name).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def oracle() -> Path:
    """The oracle binary, built once per source version with the Go module proxy."""
    built = CACHE / "oracle" / f"kubectl_output-{_source_key()}"
    if built.exists():
        return built
    if not shutil.which("go"):
        pytest.skip("Go is needed to build the kubectl output oracle")
    built.parent.mkdir(parents=True, exist_ok=True)
    # readonly: the build never rewrites go.mod or go.sum in the repository.
    env_go = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"}
    done = subprocess.run(["go", "build", "-o", str(built) + ".tmp", "."], cwd=ORACLE_SRC,
                          env=env_go, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    os.replace(str(built) + ".tmp", built)
    return built


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a plugin run: a kubeconfig for the fake cluster."""
    from tests.unit.test_cli import KUBECONFIG

    path = tmp_path_factory.mktemp("kube") / "kubeconfig"
    path.write_text(json.dumps(KUBECONFIG))
    return {"KUBECONFIG": str(path)}


def _fake(where: dict[str, str]) -> object:
    return enabled(lab_five, where, "-n", "istio-system", "-l", "app=istio-ingressgateway")


def _run_oracle(oracle: Path, document: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(oracle), *args], input=document, capture_output=True, text=True,
                          timeout=60)


def _plugin(where: dict[str, str], *argv: str) -> tuple[int, str, str]:
    return cli(_fake(where), where, "status", "-A", *argv)  # type: ignore[arg-type]


def _compare(oracle: Path, where: dict[str, str], oracle_args: list[str],
             plugin_args: list[str], unordered: bool = False) -> None:
    code, document, err = _plugin(where, "-o", "json")
    assert code == 0, err
    want = _run_oracle(oracle, document, *oracle_args)
    code, out, err = _plugin(where, *plugin_args)
    if want.returncode == 0:
        assert code == 0, err
        if unordered:
            assert sorted(out.split()) == sorted(want.stdout.split())
        else:
            assert out == want.stdout
    else:
        first = want.stderr.splitlines()[0].split(". Printing more information")[0]
        assert code == 2 and out == ""
        assert err.splitlines()[-1] == first, (err, first)


def test_there_are_enough_cases() -> None:
    assert len(JSONPATHS) + len(STRICT) + len(UNORDERED) + len(COLUMNS) >= 30


@pytest.mark.parametrize("template", JSONPATHS)
def test_jsonpath_as_kubectl(template: str, oracle: Path,
                             where: dict[str, str]) -> None:
    _compare(oracle, where, ["-mode", "jsonpath", "-expr", template],
             ["-o", f"jsonpath={template}"])


@pytest.mark.parametrize("template", STRICT)
def test_jsonpath_missing_keys_as_kubectl(template: str, oracle: Path,
                                          where: dict[str, str]) -> None:
    _compare(oracle, where, ["-mode", "jsonpath", "-expr", template, "-allow-missing=false"],
             ["-o", f"jsonpath={template}", "--allow-missing-template-keys=false"])


@pytest.mark.parametrize("template", UNORDERED)
def test_recursive_descent_as_kubectl(template: str, oracle: Path,
                                      where: dict[str, str]) -> None:
    _compare(oracle, where, ["-mode", "jsonpath", "-expr", template],
             ["-o", f"jsonpath={template}"], unordered=True)


@pytest.mark.parametrize(("spec", "sort_by"), COLUMNS)
@pytest.mark.parametrize("no_headers", [False, True])
def test_custom_columns_and_sort_by_as_kubectl(
        spec: str, sort_by: str | None, no_headers: bool, oracle: Path,
        where: dict[str, str]) -> None:
    oracle_args = ["-mode", "custom-columns", "-expr", spec]
    plugin_args = ["-o", f"custom-columns={spec}"]
    if sort_by:
        oracle_args += ["-sort-by", sort_by]
        plugin_args += ["--sort-by", sort_by]
    if no_headers:
        oracle_args.append("-no-headers")
        plugin_args.append("--no-headers")
    _compare(oracle, where, oracle_args, plugin_args)


def test_sort_by_orders_jsonpath_and_the_table_too(
        oracle: Path, where: dict[str, str]) -> None:
    template = '{range .gateways[*]}{.name}{"\\n"}{end}'
    _compare(oracle, where, ["-mode", "jsonpath", "-expr", template, "-sort-by", ".name"],
             ["-o", f"jsonpath={template}", "--sort-by", ".name"])
    code, names, _ = _plugin(where, "-o", f"jsonpath={template}", "--sort-by", ".name")
    code, table, _ = _plugin(where, "--sort-by", ".name", "--no-headers")
    assert code == 0
    assert [line.split()[1] for line in table.splitlines()] == names.split()


def test_name_prints_namespace_slash_gateway(
        where: dict[str, str]) -> None:
    code, document, _ = _plugin(where, "-o", "json")
    code, out, _ = _plugin(where, "-o", "name")
    assert code == 0
    assert out.splitlines() == [f"{g['namespace']}/{g['name']}"
                                for g in json.loads(document)["gateways"]]


def test_jsonpath_file_reads_the_template(oracle: Path, tmp_path: Path,
                                          where: dict[str, str]) -> None:
    template = '{range .gateways[*]}{.name}{"\\t"}{.role}{"\\n"}{end}'
    path = tmp_path / "template.jsonpath"
    path.write_text(template)
    _compare(oracle, where, ["-mode", "jsonpath", "-expr", template],
             ["-o", f"jsonpath-file={path}"])
    code, _, err = _plugin(where, "-o", f"jsonpath-file={tmp_path / 'missing'}")
    assert code == 2 and err.startswith("error: cannot read ")
    code, _, err = _plugin(where, "-o", "jsonpath=")
    assert code == 2 and err == "error: template format specified but no template given\n"
