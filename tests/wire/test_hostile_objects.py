"""API objects of the wrong shape are the server's error, never the plugin's: a field of the
wrong type in a pod or Deployment, or a list that is not one, is one `error:` line naming the
object and the field, exit 3 (never exit 5, "a bug")."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.wire.hostile_api import (
    Conn,
    Handler,
    Request,
    a_list,
    assert_clean,
    gateway_deployment,
    gateway_pod,
    hostile_api,
    json_answer,
    run_plugin,
    write_kubeconfig,
)

pytestmark = pytest.mark.wire

LONGEST_LINE = 1500


def answering(document: Any) -> Handler:
    def answer(conn: Conn, _request: Request) -> bool:
        conn.send(json_answer(200, document))
        return True
    return answer


def changed(make: Callable[[], dict[str, Any]], path: str, value: Any) -> dict[str, Any]:
    """The object with the field at the dotted `path` set to `value`."""
    item = copy.deepcopy(make())
    *parents, last = path.split(".")
    here = item
    for key in parents:
        here = here[key]
    here[last] = value
    return item


POD_CASES = [
    ("status.conditions", [1], "status.conditions[0]"),
    ("status.conditions", "Ready", "status.conditions"),
    ("metadata.labels", {"app": 7}, "metadata.labels[app]"),
    ("metadata.ownerReferences", [["ReplicaSet"]], "metadata.ownerReferences[0]"),
    ("spec.containers", [{"name": ["istio-proxy"]}], "spec.containers[].name"),
    ("spec", "a string", "spec"),
    ("status.phase", 3, "status.phase"),
]
DEPLOYMENT_CASES = [
    ("spec.replicas", "three", "spec.replicas"),
    ("metadata.generation", [1], "metadata.generation"),
    ("spec.paused", "yes", "spec.paused"),
    ("spec.selector", ["app"], "spec.selector"),
    ("status.conditions", [1], "status.conditions[0]"),
]


@pytest.mark.parametrize(("path", "value", "named"), POD_CASES,
                         ids=[f"pod-{c[0]}" for c in POD_CASES])
def test_a_malformed_pod_is_one_error_naming_the_field(tmp_path: Path, path: str, value: Any,
                                                       named: str) -> None:
    pods = answering(a_list(changed(gateway_pod, path, value)))
    with hostile_api(pods=pods) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_one_error(run, f"pod istio-system/istio-ingressgateway-aaaa1-0 whose {named} is")


@pytest.mark.parametrize(("path", "value", "named"), DEPLOYMENT_CASES,
                         ids=[f"deployment-{c[0]}" for c in DEPLOYMENT_CASES])
def test_a_malformed_deployment_is_one_error_naming_the_field(tmp_path: Path, path: str,
                                                              value: Any, named: str) -> None:
    deployments = answering(a_list(changed(gateway_deployment, path, value)))
    with hostile_api(deployments=deployments) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_one_error(run, f"deployment istio-system/istio-ingressgateway whose {named} is")


@pytest.mark.parametrize("document", [{"items": "many"}, {"items": [1]}, [[]], "text", 5],
                         ids=["items-a-string", "items-of-ints", "a-list", "a-string",
                              "a-number"])
def test_a_list_that_is_not_one_is_an_error(tmp_path: Path, document: Any) -> None:
    with hostile_api(pods=answering(document)) as api:
        run = run_plugin(write_kubeconfig(tmp_path, api.url), "status")
    assert_one_error(run, "the API server answered a list")


def assert_one_error(run: object, words: str) -> None:
    from tests.wire.hostile_api import Run

    assert isinstance(run, Run)
    assert run.code == 3, run.text
    lines = run.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert words in lines[0], lines[0]
    assert run.stdout == b""
    assert_clean(run, LONGEST_LINE)
