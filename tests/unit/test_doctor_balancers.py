"""Which balancer is in front of a gateway Service, and its idle timeout, per cloud."""

from __future__ import annotations

from typing import Any

import pytest

from kubectl_keepalive.doctor import balancers
from kubectl_keepalive.doctor.balancers import Layer
from kubectl_keepalive.errors import UsageError

AWS = "service.beta.kubernetes.io/aws-load-balancer-"


def service(annotations: dict[str, str] | None = None, lb_class: str | None = None,
            kind: str = "LoadBalancer", hostname: str | None = None,
            ports: tuple[int, ...] = (80, 443)) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "ports": [{"port": p, "protocol": "TCP"} for p in ports]}
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    status: dict[str, Any] = {}
    if hostname:
        status = {"loadBalancer": {"ingress": [{"hostname": hostname}]}}
    return {"metadata": {"name": "istio-ingressgateway", "annotations": annotations or {}},
            "spec": spec, "status": status}


@pytest.mark.parametrize(("svc", "providers", "kind", "layer", "idle", "source"), [
    # AWS Load Balancer Controller NLB, default and with the listener attribute
    (service(lb_class="service.k8s.aws/nlb"), (), "aws-nlb", Layer.L4, 350, "documented"),
    (service({AWS + "type": "external",
              AWS + "listener-attributes.TCP-80": "tcp.idle_timeout.seconds=1200"}), (),
     "aws-nlb", Layer.L4, 1200, "annotation " + AWS + "listener-attributes.TCP-80"),
    (service({AWS + "type": "nlb"}), (), "aws-nlb", Layer.L4, 350, "documented"),
    # TLS listener: fixed 350 s whatever the attribute says
    (service({AWS + "type": "external", AWS + "ssl-cert": "arn:cert", AWS + "ssl-ports": "80",
              AWS + "listener-attributes.TCP-80": "tcp.idle_timeout.seconds=1200"}), (),
     "aws-nlb", Layer.L4, 350, "documented"),
    # in-tree Classic Load Balancer
    (service({AWS + "connection-idle-timeout": "300"}), (), "aws-clb", Layer.L7, 300,
     "annotation " + AWS + "connection-idle-timeout"),
    (service(), ["aws:///us-east-1a/i-0abc"], "aws-clb", Layer.L7, 60, "documented"),
    (service(hostname="a1b2-123.elb.us-east-1.amazonaws.com"), (), "aws-nlb", Layer.L4, 350,
     "documented"),
    (service(hostname="a1b2-123.us-east-1.elb.amazonaws.com"), (), "aws-clb", Layer.L7, 60,
     "documented"),
    # Azure: minutes
    (service({"service.beta.kubernetes.io/azure-load-balancer-tcp-idle-timeout": "30"}), (),
     "azure-lb", Layer.L4, 1800, "annotation service.beta.kubernetes.io/azure-load-balancer-"
     "tcp-idle-timeout (minutes)"),
    (service(), ["azure:///subscriptions/x/vm-0"], "azure-lb", Layer.L4, 240, "documented"),
    # GCP passthrough and Application LB (ClusterIP behind a GCE Ingress)
    (service({"networking.gke.io/load-balancer-type": "Internal"}), (), "gcp-passthrough",
     Layer.L4, 600, "documented"),
    (service(), ["gce://project/zone/node-1"], "gcp-passthrough", Layer.L4, 600, "documented"),
    (service({"cloud.google.com/neg": '{"ingress": true}'}, kind="ClusterIP"), (),
     "gcp-application", Layer.L7, 30, "documented"),
    # DigitalOcean
    (service({"service.beta.kubernetes.io/do-loadbalancer-protocol": "tcp"}), (),
     "digitalocean", Layer.L7, 60, "documented"),
    (service({"service.beta.kubernetes.io/do-loadbalancer-http-idle-timeout-seconds": "600"}),
     (), "digitalocean", Layer.L7, 600, "annotation"),
    (service({"service.beta.kubernetes.io/do-loadbalancer-type": "REGIONAL_NETWORK"}), (),
     "digitalocean-network", Layer.L4, None, ""),
    # Oracle
    (service({"oci.oraclecloud.com/load-balancer-type": "nlb"}), (), "oci-nlb", Layer.L4, 360,
     "documented"),
    (service({"service.beta.kubernetes.io/oci-load-balancer-shape": "flexible"}), (), "oci-lb",
     Layer.L7, 300, "documented"),
    (service({"service.beta.kubernetes.io/oci-load-balancer-connection-idle-timeout": "900"}),
     (), "oci-lb", Layer.L7, 900, "annotation"),
    # Alibaba: TCP listener, and HTTP listener without a known default
    (service({"service.beta.kubernetes.io/alibaba-cloud-loadbalancer-established-timeout":
              "600"}), (), "alibaba-clb", Layer.L4, 600, "annotation"),
    (service({"service.beta.kubernetes.io/alibaba-cloud-loadbalancer-spec": "slb.s1.small"}), (),
     "alibaba-clb", Layer.L4, 900, "documented"),
    # Huawei
    (service({"kubernetes.io/elb.class": "performance"}), (), "huawei-elb", Layer.L4, 300,
     "documented"),
    (service({"kubernetes.io/elb.keepalive_timeout": "1000"}), (), "huawei-elb", Layer.L4, 1000,
     "annotation"),
])
def test_detection(svc: dict[str, Any], providers: list[str], kind: str, layer: Layer,
                   idle: int | None, source: str) -> None:
    found = balancers.detect(svc, providers, port=80)
    assert (found.kind, found.layer, found.idle_timeout_s) == (kind, layer, idle)
    assert found.source.startswith(source)


def test_alibaba_http_listener_is_l7_without_a_guessed_value() -> None:
    svc = service({"service.beta.kubernetes.io/alibaba-cloud-loadbalancer-protocol-port":
                   "http:80,https:443"})
    found = balancers.detect(svc, port=80)
    assert (found.kind, found.layer, found.idle_timeout_s) == ("alibaba-clb", Layer.L7, None)


@pytest.mark.parametrize(("svc", "providers"), [
    (service(), []),
    (service(), ["kind://docker/kind/kind-control-plane"]),
    (service(lb_class="metallb.io/metallb"), []),
    (service(), ["aws:///a/i-1", "gce://p/z/n"]),  # mixed providers: not told
])
def test_unknown_is_never_guessed(svc: dict[str, Any], providers: list[str]) -> None:
    found = balancers.detect(svc, providers)
    assert found.kind == "unknown" and found.idle_timeout_s is None
    assert found.layer is Layer.UNKNOWN and balancers.DECLARED_KIND in found.notes[0]


def test_not_a_load_balancer_service() -> None:
    found = balancers.detect(service(kind="NodePort"), ["aws:///a/i-1"])
    assert found.kind == "none" and found.idle_timeout_s is None


def test_declared_wins_over_cloud_detection() -> None:
    svc = service({balancers.DECLARED_KIND: "l4", balancers.DECLARED_IDLE: "6",
                   AWS + "type": "external"}, lb_class="service.k8s.aws/nlb")
    found = balancers.detect(svc, ["aws:///a/i-1"])
    assert (found.kind, found.layer, found.idle_timeout_s) == ("declared", Layer.L4, 6)
    assert found.source == f"annotation {balancers.DECLARED_IDLE}"
    l7 = balancers.detect(service({balancers.DECLARED_KIND: "L7",
                                   balancers.DECLARED_IDLE: "60"}))
    assert (l7.layer, l7.idle_timeout_s) == (Layer.L7, 60)


@pytest.mark.parametrize("annotations", [
    {balancers.DECLARED_KIND: "l5", balancers.DECLARED_IDLE: "6"},
    {balancers.DECLARED_KIND: "l4", balancers.DECLARED_IDLE: "six"},
    {balancers.DECLARED_KIND: "l4", balancers.DECLARED_IDLE: "0"},
    {balancers.DECLARED_IDLE: "6"},
])
def test_bad_declarations_are_usage_errors(annotations: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        balancers.detect(service(annotations))
