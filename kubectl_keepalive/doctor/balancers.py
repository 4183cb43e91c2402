"""What sits in front of a gateway Service, and its idle timeout, from the Service alone.

Order: our own declaration annotations (the lab, or anyone whose balancer is not detectable),
then `spec.loadBalancerClass`, then the cloud controllers' annotation prefixes, then the
`status.loadBalancer` hostname, then the nodes' `spec.providerID`. A kind that cannot be told is
reported as unknown; no value is ever guessed. Each documented default cites where it is written.
Pure: a Service dict (as the API returns it) in, a frozen record out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubectl_keepalive.errors import UsageError

# Our own annotations: they win over detection.
DECLARED_KIND = "keepalive.kubectl-plugin.io/balancer-kind"  # "l4" or "l7"
DECLARED_IDLE = "keepalive.kubectl-plugin.io/idle-timeout-seconds"

AWS_TYPE = "service.beta.kubernetes.io/aws-load-balancer-type"
AWS_CLB_IDLE = "service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout"
AWS_LISTENER_ATTRS = "service.beta.kubernetes.io/aws-load-balancer-listener-attributes."
AWS_SSL_CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
AWS_SSL_PORTS = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
AZURE_IDLE = "service.beta.kubernetes.io/azure-load-balancer-tcp-idle-timeout"
DO_TYPE = "service.beta.kubernetes.io/do-loadbalancer-type"
DO_IDLE = "service.beta.kubernetes.io/do-loadbalancer-http-idle-timeout-seconds"
OCI_TYPE = "oci.oraclecloud.com/load-balancer-type"
OCI_IDLE = "service.beta.kubernetes.io/oci-load-balancer-connection-idle-timeout"
OCI_BACKEND_PROTOCOL = "service.beta.kubernetes.io/oci-load-balancer-backend-protocol"
ALI_PREFIX = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
ALI_TCP_IDLE = ALI_PREFIX + "established-timeout"
ALI_HTTP_IDLE = ALI_PREFIX + "idle-timeout"
ALI_PROTOCOL_PORT = ALI_PREFIX + "protocol-port"
HUAWEI_IDLE = "kubernetes.io/elb.keepalive_timeout"

# Documented defaults, each with the page or code that states it.
DOC_AWS_NLB = ("AWS ELB docs, Network Load Balancer 'Update the TCP idle timeout': "
               "350 s for TCP flows (60-6000), TLS listeners fixed at 350 s; 'clients or "
               "targets can use TCP keepalive packets to reset the idle timeout'")
DOC_AWS_CLB = ("AWS ELB docs, Classic Load Balancer 'Configure the idle connection timeout': "
               "60 s; TCP keep-alive probes do not prevent it because they carry no data")
DOC_AZURE = ("Azure docs 'Configure TCP idle timeout for Azure Load Balancer': default 4 min, "
             "keep-alive packets keep the flow; annotation azure-load-balancer-tcp-idle-timeout "
             "(cloud-provider-azure) sets it in minutes")
DOC_GCP = ("Google Cloud compute API, BackendServiceConnectionTrackingPolicy.idleTimeoutSec: "
           "internal passthrough load balancers keep an idle TCP entry 10 min (minimum and "
           "default); VPC firewall connection tracking also forgets idle TCP after 10 min")
DOC_GCP_APP = ("GKE Ingress BackendConfig timeoutSec: backend service timeout, default 30 s "
               "(a response timeout, not an idle timeout)")
DOC_DO = ("DigitalOcean docs 'Configure Advanced Load Balancer Settings in Kubernetes': "
          "do-loadbalancer-http-idle-timeout-seconds, default 60 s (30-600)")
DOC_OCI_LB = ("oracle/oci-cloud-controller-manager docs/load-balancer-annotations.md: "
              "oci-load-balancer-connection-idle-timeout, 300 s for TCP listeners, 60 s for HTTP")
DOC_OCI_NLB = ("OCI docs, Network Load Balancer 'Changing a Listener's Idle Timeout': "
               "TCP 360 s")
DOC_ALI_TCP = ("Alibaba Cloud CCM annotation alibaba-cloud-loadbalancer-established-timeout "
               "(TCP, 10-900 s); CLB CreateLoadBalancerTCPListener EstablishedTimeout "
               "default 900 s")
DOC_HUAWEI = ("Huawei CCE annotation kubernetes.io/elb.keepalive_timeout: TCP listeners "
              "10-4000 s, default 300 s")


class Layer(str, enum.Enum):
    L4 = "l4"  # tracks TCP flows: any packet, keepalive probes included, resets its idle timer
    L7 = "l7"  # terminates TCP or HTTP: only data resets its timer; keepalive does not help
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Balancer:
    """The load balancer in front of one Service port, as far as the Service tells."""

    kind: str  # aws-nlb, aws-clb, azure-lb, gcp-passthrough, gcp-application, digitalocean,
    # digitalocean-network, oci-lb, oci-nlb, alibaba-clb, huawei-elb, declared, none, unknown
    layer: Layer
    idle_timeout_s: int | None  # None: not known (never guessed)
    source: str  # the annotation the value came from, or "documented default: <doc>"
    detected_by: str  # what told the kind
    fix: str = ""  # how to raise the timer (annotation and range), when there is one
    absolute: bool = False  # the value is a response timeout, not an idle timeout
    notes: tuple[str, ...] = ()


def detect(
    service: Mapping[str, Any],
    provider_ids: Iterable[str] = (),
    port: int | None = None,
) -> Balancer:
    """The balancer in front of `service` for its `port` (the Service port, not targetPort)."""
    metadata = service.get("metadata") or {}
    spec = service.get("spec") or {}
    annotations: Mapping[str, str] = {
        str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()
    }
    declared = _declared(annotations)
    if declared is not None:
        return declared
    lb_class = spec.get("loadBalancerClass")
    if spec.get("type") != "LoadBalancer":
        if any(k.startswith("cloud.google.com/") for k in annotations) and (
            "ingress" in annotations.get("cloud.google.com/neg", "")
            or "cloud.google.com/backend-config" in annotations
        ):
            return _gcp_application()
        return Balancer("none", Layer.UNKNOWN, None, "", f"spec.type {spec.get('type')!r}",
                        notes=("the Service is not of type LoadBalancer: whatever is in front "
                               "(an Ingress, an external proxy) is not visible from it; declare "
                               f"it with {DECLARED_KIND} and {DECLARED_IDLE}",))
    if isinstance(lb_class, str) and lb_class:
        if lb_class in ("service.k8s.aws/nlb", "eks.amazonaws.com/nlb"):
            return _aws_nlb(annotations, service, port, f"spec.loadBalancerClass {lb_class}")
        return Balancer("unknown", Layer.UNKNOWN, None, "",
                        f"spec.loadBalancerClass {lb_class}",
                        notes=(f"load balancer class {lb_class!r} is not one the doctor knows; "
                               f"declare it with {DECLARED_KIND} and {DECLARED_IDLE}",))
    by_annotation = _by_annotations(annotations, service, port)
    if by_annotation is not None:
        return by_annotation
    by_status = _by_status(service, annotations, port)
    if by_status is not None:
        return by_status
    return _by_provider(list(provider_ids), annotations, service, port)


def _declared(annotations: Mapping[str, str]) -> Balancer | None:
    kind = annotations.get(DECLARED_KIND)
    idle = annotations.get(DECLARED_IDLE)
    if kind is None and idle is None:
        return None
    layer = {"l4": Layer.L4, "l7": Layer.L7}.get((kind or "").strip().lower())
    if layer is None:
        raise UsageError(f"annotation {DECLARED_KIND} must be l4 or l7, got {kind!r}")
    seconds = _int(idle) if idle is not None else None
    if idle is not None and (seconds is None or seconds <= 0):
        raise UsageError(f"annotation {DECLARED_IDLE} must be whole seconds > 0, got {idle!r}")
    return Balancer("declared", layer, seconds,
                    f"annotation {DECLARED_IDLE}" if seconds is not None else "",
                    f"annotation {DECLARED_KIND}",
                    fix=f"raise the balancer's idle timeout (declared in {DECLARED_IDLE})")


def _by_annotations(
    annotations: Mapping[str, str], service: Mapping[str, Any], port: int | None
) -> Balancer | None:
    keys = list(annotations)
    if any(k.startswith("service.beta.kubernetes.io/aws-load-balancer-") for k in keys):
        kind = annotations.get(AWS_TYPE, "").strip().lower()
        if kind in ("nlb", "external", "nlb-ip"):
            return _aws_nlb(annotations, service, port, f"annotation {AWS_TYPE}={kind}")
        return _aws_clb(annotations, "annotations service.beta.kubernetes.io/aws-load-balancer-*")
    if any(k.startswith("service.beta.kubernetes.io/azure-") for k in keys):
        return _azure(annotations, "annotations service.beta.kubernetes.io/azure-*")
    if any(k.startswith(("cloud.google.com/", "networking.gke.io/")) for k in keys):
        return _gcp("annotations cloud.google.com/* or networking.gke.io/*")
    if any(k.startswith("service.beta.kubernetes.io/do-loadbalancer-") for k in keys):
        return _digitalocean(annotations, "annotations *do-loadbalancer-*")
    if OCI_TYPE in annotations or any(
        k.startswith(("service.beta.kubernetes.io/oci-", "oci-network-load-balancer."))
        for k in keys
    ):
        return _oci(annotations, "annotations oci*")
    if any(k.startswith(ALI_PREFIX) for k in keys):
        return _alibaba(annotations, port, f"annotations {ALI_PREFIX}*")
    if any(k.startswith("kubernetes.io/elb.") for k in keys):
        return _huawei(annotations, "annotations kubernetes.io/elb.*")
    return None


# AWS: NLB/ALB names are "<name>-<id>.elb.<region>.amazonaws.com"; CLB names are
# "<name>-<id>.<region>.elb.amazonaws.com" (the region comes before "elb").
_AWS_NLB_HOST = re.compile(r"\.elb\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_AWS_CLB_HOST = re.compile(r"\.[a-z0-9-]+\.elb\.amazonaws\.com(\.cn)?$")


def _by_status(
    service: Mapping[str, Any], annotations: Mapping[str, str], port: int | None
) -> Balancer | None:
    for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        host = str((ingress or {}).get("hostname") or "")
        if _AWS_NLB_HOST.search(host):
            return _aws_nlb(annotations, service, port, f"status hostname {host}")
        if _AWS_CLB_HOST.search(host):
            return _aws_clb(annotations, f"status hostname {host}")
    return None


def _by_provider(
    provider_ids: list[str], annotations: Mapping[str, str], service: Mapping[str, Any],
    port: int | None,
) -> Balancer:
    schemes = {pid.split("://", 1)[0] for pid in provider_ids if "://" in pid}
    if len(schemes) == 1:
        scheme = schemes.pop()
        detected = f"nodes' spec.providerID {scheme}://"
        if scheme == "aws":
            # The in-tree controller makes a Classic Load Balancer when nothing else is asked.
            return _aws_clb(annotations, detected)
        if scheme == "azure":
            return _azure(annotations, detected)
        if scheme == "gce":
            return _gcp(detected)
        if scheme == "digitalocean":
            return _digitalocean(annotations, detected)
        if scheme == "oci":
            return _oci(annotations, detected)
    told = ", ".join(sorted({p.split("://", 1)[0] for p in provider_ids})) or "none"
    return Balancer("unknown", Layer.UNKNOWN, None, "", f"provider IDs: {told}",
                    notes=("nothing on the Service or the nodes tells which balancer is in "
                           f"front; declare it with {DECLARED_KIND} and {DECLARED_IDLE}",))


def _aws_nlb(
    annotations: Mapping[str, str], service: Mapping[str, Any], port: int | None, detected: str
) -> Balancer:
    ports = _service_ports(service, port)
    if _aws_tls(annotations, ports):
        return Balancer("aws-nlb", Layer.L4, 350, f"documented default: {DOC_AWS_NLB}", detected,
                        fix="TLS listeners are fixed at 350 s: keep keepalive below it",
                        notes=("TLS listener: idle timeout fixed at 350 s",))
    for number in ports:
        raw = annotations.get(f"{AWS_LISTENER_ATTRS}TCP-{number}")
        if raw:
            attrs = dict(kv.split("=", 1) for kv in raw.split(",") if "=" in kv)
            value = _int(attrs.get("tcp.idle_timeout.seconds"))
            if value is not None:
                return Balancer("aws-nlb", Layer.L4, value,
                                f"annotation {AWS_LISTENER_ATTRS}TCP-{number}", detected,
                                fix=_aws_nlb_fix(number))
    return Balancer("aws-nlb", Layer.L4, 350, f"documented default: {DOC_AWS_NLB}", detected,
                    fix=_aws_nlb_fix(ports[0] if ports else None))


def _aws_nlb_fix(port: int | None) -> str:
    key = f"{AWS_LISTENER_ATTRS}TCP-{port if port is not None else '<port>'}"
    return (f"annotation {key}: tcp.idle_timeout.seconds=N (60-6000; needs the AWS Load "
            "Balancer Controller)")


def _aws_tls(annotations: Mapping[str, str], ports: list[int]) -> bool:
    if AWS_SSL_CERT not in annotations:
        return False
    listed = annotations.get(AWS_SSL_PORTS)
    if not listed or listed.strip() == "*":
        return True  # with a certificate and no port list, every port is TLS
    names = {p.strip() for p in listed.split(",")}
    return any(str(p) in names for p in ports)


def _aws_clb(annotations: Mapping[str, str], detected: str) -> Balancer:
    value = _int(annotations.get(AWS_CLB_IDLE))
    source = f"annotation {AWS_CLB_IDLE}" if value is not None else (
        f"documented default: {DOC_AWS_CLB}")
    return Balancer("aws-clb", Layer.L7, value if value is not None else 60, source, detected,
                    fix=f"annotation {AWS_CLB_IDLE} (1-4000 s)",
                    notes=("a Classic Load Balancer keeps two TCP connections and counts only "
                           "data: TCP keepalive probes do not reset it",))


def _azure(annotations: Mapping[str, str], detected: str) -> Balancer:
    minutes = _int(annotations.get(AZURE_IDLE))
    if minutes is not None:
        return Balancer("azure-lb", Layer.L4, minutes * 60, f"annotation {AZURE_IDLE} (minutes)",
                        detected, fix=f"annotation {AZURE_IDLE} (minutes, 4-100)")
    return Balancer("azure-lb", Layer.L4, 240, f"documented default: {DOC_AZURE}", detected,
                    fix=f"annotation {AZURE_IDLE} (minutes, 4-100)")


def _gcp(detected: str) -> Balancer:
    return Balancer("gcp-passthrough", Layer.L4, 600, f"documented default: {DOC_GCP}", detected,
                    notes=("passthrough: the backends see the client's packets; the idle timer "
                           "is the connection tracking of the load balancer and VPC",
                           "the same API field documents 60 s for external passthrough load "
                           "balancers, as a setting not available publicly; check yours with "
                           f"a test request or declare it with {DECLARED_IDLE}"))


def _gcp_application() -> Balancer:
    return Balancer("gcp-application", Layer.L7, 30, f"documented default: {DOC_GCP_APP}",
                    "annotations cloud.google.com/neg (ingress) or cloud.google.com/backend-config",
                    fix="BackendConfig spec.timeoutSec", absolute=True,
                    notes=("an Application Load Balancer proxies HTTP: keepalive does not help",))


def _digitalocean(annotations: Mapping[str, str], detected: str) -> Balancer:
    kind = annotations.get(DO_TYPE, "").strip().upper()
    if kind == "REGIONAL_NETWORK":
        return Balancer("digitalocean-network", Layer.L4, None, "", f"annotation {DO_TYPE}",
                        notes=("DigitalOcean does not document the network load balancer's idle "
                               f"timeout; declare it with {DECLARED_IDLE} if known",))
    value = _int(annotations.get(DO_IDLE))
    source = f"annotation {DO_IDLE}" if value is not None else f"documented default: {DOC_DO}"
    return Balancer("digitalocean", Layer.L7, value if value is not None else 60, source, detected,
                    fix=f"annotation {DO_IDLE} (30-600 s)",
                    notes=("the regional load balancer proxies connections: it counts data, "
                           "not keepalive probes",))


def _oci(annotations: Mapping[str, str], detected: str) -> Balancer:
    if annotations.get(OCI_TYPE, "").strip().lower() == "nlb":
        return Balancer("oci-nlb", Layer.L4, 360, f"documented default: {DOC_OCI_NLB}",
                        f"annotation {OCI_TYPE}=nlb",
                        fix="the network load balancer listener's tcp idle timeout (OCI CLI/API)")
    value = _int(annotations.get(OCI_IDLE))
    if value is not None:
        source = f"annotation {OCI_IDLE}"
    else:
        http = annotations.get(OCI_BACKEND_PROTOCOL, "TCP").strip().upper() in ("HTTP", "HTTP2")
        value = 60 if http else 300
        source = f"documented default: {DOC_OCI_LB}"
    return Balancer("oci-lb", Layer.L7, value, source, detected, fix=f"annotation {OCI_IDLE}",
                    notes=("the OCI load balancer proxies connections: only data resets it",))


def _alibaba(annotations: Mapping[str, str], port: int | None, detected: str) -> Balancer:
    protocol_port = annotations.get(ALI_PROTOCOL_PORT, "")
    http_ports = {p.split(":", 1)[1].strip() for p in protocol_port.split(",")
                  if ":" in p and p.split(":", 1)[0].strip().lower() in ("http", "https")}
    if port is not None and str(port) in http_ports:
        value = _int(annotations.get(ALI_HTTP_IDLE))
        return Balancer("alibaba-clb", Layer.L7, value,
                        f"annotation {ALI_HTTP_IDLE}" if value is not None else "", detected,
                        fix=f"annotation {ALI_HTTP_IDLE}",
                        notes=("HTTP listener: a proxy, only data resets it",)
                        + (() if value is not None else
                           ("default of the HTTP listener idle timeout not verified; "
                            f"declare it with {DECLARED_IDLE}",)))
    value = _int(annotations.get(ALI_TCP_IDLE))
    source = f"annotation {ALI_TCP_IDLE}" if value is not None else (
        f"documented default: {DOC_ALI_TCP}")
    return Balancer("alibaba-clb", Layer.L4, value if value is not None else 900, source,
                    detected, fix=f"annotation {ALI_TCP_IDLE} (10-900 s)")


def _huawei(annotations: Mapping[str, str], detected: str) -> Balancer:
    value = _int(annotations.get(HUAWEI_IDLE))
    source = f"annotation {HUAWEI_IDLE}" if value is not None else (
        f"documented default: {DOC_HUAWEI}")
    return Balancer("huawei-elb", Layer.L4, value if value is not None else 300, source, detected,
                    fix=f"annotation {HUAWEI_IDLE} (10-4000 s)",
                    notes=("Huawei documents the timer as 'no request received'; whether "
                           "keepalive probes reset it is not documented",))


def _service_ports(service: Mapping[str, Any], port: int | None) -> list[int]:
    if port is not None:
        return [port]
    out: list[int] = []
    for item in (service.get("spec") or {}).get("ports") or ():
        value = _int((item or {}).get("port"))
        if value is not None and str((item or {}).get("protocol") or "TCP").upper() == "TCP":
            out.append(value)
    return out


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None
