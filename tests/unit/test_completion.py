from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubectl_keepalive.cli.completion import complete, install_completion, render
from kubectl_keepalive.cli.main import build_parser


def fake_kubectl(args: list[str]) -> list[str]:
    if args[:2] == ["get", "namespaces"]:
        return ["default", "istio-system", "istio-ingress"]
    if args[:2] == ["config", "get-contexts"]:
        return ["lab", "prod"]
    return []


def test_subcommands_flags_and_values() -> None:
    parser = build_parser()
    assert complete(["e"], parser, fake_kubectl) == (["enable"], 4)
    assert complete([""], parser, fake_kubectl)[0] == [
        "completion", "diff", "disable", "doctor", "enable", "probe", "rbac", "status", "version"]
    flags, _ = complete(["enable", "--d"], parser, fake_kubectl)
    assert flags == ["--dry-run"]
    assert complete(["enable", "--dry-run", ""], parser, fake_kubectl) == (
        ["none", "client", "server"], 4)
    assert complete(["status", "-n", "istio-"], parser, fake_kubectl) == (
        ["istio-system", "istio-ingress"], 4)
    assert complete(["status", "--context", "p"], parser, fake_kubectl) == (["prod"], 4)
    assert complete(["status", "-o", ""], parser, fake_kubectl)[0] == [
        "table", "wide", "json", "yaml", "name", "jsonpath=", "jsonpath-file=", "custom-columns="]
    assert complete(["status", "--from-file", ""], parser, fake_kubectl) == ([], 0)


def test_cobra_output_format() -> None:
    assert render(["a", "b"], 4) == "a\nb\n:4\n"


def test_installed_script_is_run_the_way_kubectl_runs_it(tmp_path: Path) -> None:
    path = install_completion(str(tmp_path))
    assert os.access(path, os.X_OK) and path.endswith("kubectl_complete-keepalive")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    done = subprocess.run([path, "dis"], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "disable\n:4\n"


def test_real_kubectl_asks_the_installed_script(tmp_path: Path) -> None:
    install_completion(str(tmp_path))
    path = os.pathsep.join([str(tmp_path), str(Path(sys.executable).parent),
                            os.environ.get("PATH", "")])
    done = subprocess.run(["kubectl", "__complete", "keepalive", "dis"], capture_output=True,
                          text=True, env=dict(os.environ, PATH=path), timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["disable", ":4"]


def test_install_into_a_missing_folder_is_one_usage_line(tmp_path: Path) -> None:
    import io

    from kubectl_keepalive.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    missing = tmp_path / "no" / "such"
    code = main(["completion", "--install", str(missing)], out, err, None, {}, io.StringIO())
    assert (code, out.getvalue()) == (2, "")
    assert err.getvalue().startswith("error: --install") and err.getvalue().count("\n") == 1
    assert not missing.exists()
