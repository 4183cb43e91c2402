"""The filter's workloadSelector is the Deployment's, whatever -l chose the gateway by (issue 24).

A filter selecting by `istio.io/rev=canary` stops reaching its gateway when the gateway moves to
the next revision; online the Deployment's selector is used, offline such labels are refused.
"""

from __future__ import annotations

import json

import pytest

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.istio import own_selector
from kubectl_keepalive.model import Gateway
from kubectl_keepalive.usecases import app
from tests.unit.fake_cluster import FakeCluster, FakeGateway
from tests.unit.test_cli import env, run

__all__ = ["env"]  # the fixture, imported for the tests below

NS = "istio-canary"
FAST = ["--idle", "7s", "--interval", "5s", "--probes", "2"]
DEPLOYMENT_SELECTOR = {"app": "istio-ingressgateway-canary", "istio": "ingressgateway-canary"}


def canary() -> FakeGateway:
    return FakeGateway(NS, "istio-ingressgateway-canary",
                       {**DEPLOYMENT_SELECTOR, "istio.io/rev": "canary",
                        "service.istio.io/canonical-revision": "canary"},
                       [8080, 8443], selector=DEPLOYMENT_SELECTOR)


def written_selector(fake: FakeCluster) -> dict[str, str]:
    (only,) = fake.filters.values()
    labels: dict[str, str] = only["spec"]["workloadSelector"]["labels"]
    return labels


@pytest.mark.parametrize("selector", ["istio.io/rev=canary",
                                      "service.istio.io/canonical-revision=canary",
                                      "app=istio-ingressgateway-canary,istio.io/rev=canary"])
def test_online_the_filter_selects_by_the_deployment_whatever_l_said(
        selector: str, env: dict[str, str]) -> None:
    fake = FakeCluster(canary())
    code, _out, err = run(fake, env, "enable", "-y", "-n", NS, "-l", selector, *FAST)
    assert code == 0, err
    assert written_selector(fake) == DEPLOYMENT_SELECTOR


def test_the_same_values_through_another_l_write_and_roll_nothing(env: dict[str, str]) -> None:
    fake = FakeCluster(canary())
    code, _out, err = run(fake, env, "enable", "-y", "-n", NS, "-l", "istio.io/rev=canary",
                          *FAST)
    assert code == 0, err
    writes = list(fake.writes)
    assert [w[0] for w in writes] == ["create", "restart"]
    for other in ("app=istio-ingressgateway-canary", None):
        where = ["-l", other] if other else []
        code, _out, err = run(fake, env, "enable", "-y", "-n", NS, *where, *FAST)
        assert code == 0 and "nothing to do" in err, err
        code, _out, err = run(fake, env, "diff", "-n", NS, *where, *FAST)
        assert code == 0, err
    assert fake.writes == writes


@pytest.mark.parametrize("label", own_selector.CONTROLLER_LABELS)
def test_offline_a_label_from_the_controller_or_revision_is_refused(
        label: str, env: dict[str, str]) -> None:
    code, out, err = run(None, env, "enable", "--dry-run=client", "-n", NS, "-l",
                         f"app=istio-ingressgateway-canary,{label}=x1", "--port", "8080",
                         "-o", "yaml")
    assert code == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: -l {label}=x1: pods get {label} from their ")
    assert "Traceback" not in err


def test_offline_with_stable_labels_and_revision_flag_still_renders(env: dict[str, str]) -> None:
    code, out, err = run(None, env, "enable", "--dry-run=client", "-n", NS, "-l",
                         "app=istio-ingressgateway-canary", "--revision", "canary",
                         "--port", "8080", "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["spec"]["workloadSelector"]["labels"] == {
        "app": "istio-ingressgateway-canary"}
    assert document["metadata"]["labels"]["istio.io/rev"] == "canary"


def test_without_a_deployment_l_is_the_selector_and_controller_labels_are_refused() -> None:
    bare = Gateway(NS, "gw", {}, None)
    scope = app.Scope(NS, "app=gw")
    assert app._base_selector(bare, scope) == {"app": "gw"}
    with pytest.raises(UsageError, match="pods get pod-template-hash from their controller"):
        app._base_selector(bare, app.Scope(NS, "app=gw,pod-template-hash=abc"))
    with pytest.raises(UsageError, match="no Deployment with matchLabels"):
        app._base_selector(bare, app.Scope(NS, "app in (gw)"))
