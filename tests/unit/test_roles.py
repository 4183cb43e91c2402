"""Roles at the CLI: status shows every proxy with its job; diff, enable and disable act on
ingress gateways unless -l picks others, and say so; each filter selects one gateway only.
Over FakeCluster (a fake); proxies labelled as their installers label them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.unit.fake_cluster import (
    FakeCluster,
    agentgateway,
    ambient_east_west,
    ambient_waypoint,
    gateway_api_ingress,
    helm_gateway,
    iop_east_west,
    iop_egress,
    iop_ingress,
)
from tests.unit.shared_selector import two_gateways_one_selector
from tests.unit.test_cli import KUBECONFIG, run


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return {"KUBECONFIG": str(path)}


def mesh() -> FakeCluster:
    return FakeCluster(iop_ingress(), iop_egress(), iop_east_west(), ambient_waypoint(),
                       gateway_api_ingress("web", "apps"), agentgateway("agw", "apps"),
                       helm_gateway("istio-egress", "egress", [80]))


def test_status_lists_every_proxy_with_its_role(env: dict[str, str]) -> None:
    fake = mesh()
    fake.gateways.append(ambient_east_west("ambient"))
    code, out, err = run(fake, env, "status", "-A", "-o", "json")
    assert code == 0, err
    roles = {(g["namespace"], g["name"]): (g["role"], g["proxy"])
             for g in json.loads(out)["gateways"]}
    assert roles == {
        ("istio-system", "istio-ingressgateway"): ("ingress", "envoy"),
        ("istio-system", "istio-egressgateway"): ("egress", "envoy"),
        ("istio-system", "istio-eastwestgateway"): ("east-west", "envoy"),
        ("ambient", "istio-eastwestgateway"): ("east-west", "envoy"),
        ("apps", "waypoint"): ("waypoint", "envoy"),
        ("apps", "web"): ("ingress", "envoy"),
        ("apps", "agw"): ("ingress", "agentgateway"),
        ("egress", "istio-egress"): ("egress", "envoy"),
    }
    # agentgateway has no Envoy admin to read: listed with a note, never asked.
    assert not any("agw" in read for read in fake.admin_reads)
    assert "apps/agw runs agentgateway, not Envoy: an EnvoyFilter cannot set its keepalive" in err
    code, wide, _ = run(fake, env, "status", "-A", "-o", "wide")
    assert code == 0
    header, *rows = wide.splitlines()
    role_column = header.split().index("ROLE")
    seen = {(r.split()[1], r.split()[role_column]) for r in rows}
    assert ("istio-eastwestgateway", "east-west") in seen and ("waypoint", "waypoint") in seen


def test_enable_in_a_namespace_touches_only_its_ingress_gateways(env: dict[str, str]) -> None:
    fake = FakeCluster(iop_ingress(), iop_egress(), iop_east_west(),
                       ambient_waypoint("istio-system"), ambient_east_west("ambient"))
    code, out, err = run(fake, env, "diff", "-n", "istio-system")
    assert code == 1
    assert "istio-ingressgateway" in out and "egressgateway" not in out
    assert "eastwestgateway" not in out
    code, out, err = run(fake, env, "enable", "-y", "-n", "istio-system")
    assert code == 0, err
    assert {(w[0], w[1]) for w in fake.writes} == {
        ("create", "istio-system/keepalive-istio-ingressgateway"),
        ("restart", "istio-system/istio-ingressgateway")}
    assert ("not ingress gateways, left alone: east-west gateway "
            "istio-system/istio-eastwestgateway, egress gateway istio-system/istio-egressgateway, "
            "waypoint istio-system/waypoint") in err
    # The ambient east-west gateway alone in its namespace: nothing to act on.
    assert run(fake, env, "diff", "-n", "ambient")[0] == 3


def test_enable_with_l_on_an_egress_gateway_says_what_it_is(env: dict[str, str]) -> None:
    fake = FakeCluster(iop_ingress(), iop_egress())
    code, out, err = run(fake, env, "enable", "--dry-run=client", "-l",
                         "app=istio-egressgateway")
    assert code == 0, err
    assert ("-l app=istio-egressgateway selects proxies that are not ingress gateways: egress "
            "gateway istio-system/istio-egressgateway") in err
    assert "envoyfilter.networking.istio.io/keepalive-istio-egressgateway created" in out
    assert "ingressgateway" not in out.replace("egressgateway", "")


def test_only_other_proxies_found_is_an_error_that_names_them(env: dict[str, str]) -> None:
    fake = FakeCluster(iop_egress(), iop_east_west())
    code, _, err = run(fake, env, "enable", "-y", "-n", "istio-system")
    assert code == 3
    assert "no Istio ingress gateway found in namespace istio-system" in err
    assert ("found only proxies that are not Envoy ingress gateways: east-west gateway "
            "istio-system/istio-eastwestgateway, egress gateway "
            "istio-system/istio-egressgateway") in err
    assert fake.writes == []
    code, _, err = run(FakeCluster(agentgateway()), env, "disable", "-y", "-l",
                       "gateway.networking.k8s.io/gateway-name=agw")
    assert code == 3 and "ingress gateway istio-system/agw (agentgateway, not Envoy)" in err


@pytest.mark.parametrize("selector", [[], ["-l", "istio=ingress"]])
def test_each_filter_reaches_only_its_own_gateway(env: dict[str, str],
                                                  selector: list[str]) -> None:
    fake = two_gateways_one_selector({"app": "gw-a", "tier": "edge"},
                                     {"app": "gw-b", "tier": "internal"}, ports=(80, 81))
    code, _, err = run(fake, env, "enable", "-y", "-n", "gw", *selector)
    assert code == 0, err
    assert {k: f["spec"]["workloadSelector"]["labels"] for k, f in fake.filters.items()} == {
        ("gw", "keepalive-gw-a"): {"istio": "ingress", "app": "gw-a"},
        ("gw", "keepalive-gw-b"): {"istio": "ingress", "app": "gw-b"}}
    assert "its selector also matches the pods of gw/gw-b" in err
    code, out, _ = run(fake, env, "status", "-n", "gw", "-o", "json")
    listeners = [lst for g in json.loads(out)["gateways"] for p in g["pods"]
                 for lst in p["listeners"]]
    assert listeners and not any(lst["duplicate_options"] for lst in listeners)


def test_gateways_no_label_tells_apart_are_refused(env: dict[str, str]) -> None:
    fake = two_gateways_one_selector({}, {}, ports=(80, 81))
    code, _, err = run(fake, env, "enable", "-y", "-n", "gw")
    assert code == 3
    assert "gateway gw/gw-a: its selector istio=ingress also matches the pods of gw/gw-b" in err
    assert fake.writes == []
