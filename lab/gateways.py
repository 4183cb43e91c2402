"""The lab's seeded Istio gateways, as they are found in real clusters, and what backs each one.

Each gateway is a real Deployment (+ Service) in the lab API server whose pods kwok runs, and one
real Envoy on this machine whose listeners mimic what istiod would give that gateway. Every pod of
the gateway, including pods made later by a rollout, reaches that Envoy (see pod_wiring.py).

Addresses: every listener binds loopback only. Each gateway gets its own loopback address
(127.0.10.N) so that two gateways can both bind port 80 or 8080, as two pods would; its Envoy admin
listens on 127.0.0.1 at a port of its own. This module only describes and renders; it starts
nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
PROXY_IMAGE = "istio/proxyv2:1.27.3"


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str  # the Deployment's (and Service's) name
    pod_labels: dict[str, str]
    selector: dict[str, str]  # the Deployment's matchLabels (what a workloadSelector would use)
    listener_ports: tuple[int, ...]  # the ports Envoy binds (the Service targetPorts)
    service_ports: tuple[tuple[str, int, int], ...]  # (name, port, targetPort)
    replicas: int
    index: int  # picks the loopback address and the admin port
    service_type: str = "LoadBalancer"
    deployment_labels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def slug(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def address(self) -> str:
        return f"127.0.10.{self.index}"

    @property
    def admin_port(self) -> int:
        return 15100 + self.index

    @property
    def revision(self) -> str:
        return self.pod_labels.get("istio.io/rev", "default")


def _status_ports(*ports: tuple[str, int, int]) -> tuple[tuple[str, int, int], ...]:
    return (("status-port", 15021, 15021), *ports)


SEEDED: tuple[Gateway, ...] = (
    # IstioOperator / istioctl install: the classic ingress gateway in the root namespace.
    Gateway(
        namespace="istio-system",
        name="istio-ingressgateway",
        pod_labels={
            "app": "istio-ingressgateway",
            "istio": "ingressgateway",
            "istio.io/rev": "default",
            "install.operator.istio.io/owning-resource": "unknown",
            "operator.istio.io/component": "IngressGateways",
            "service.istio.io/canonical-name": "istio-ingressgateway",
            "service.istio.io/canonical-revision": "latest",
            "sidecar.istio.io/inject": "false",
        },
        selector={"app": "istio-ingressgateway", "istio": "ingressgateway"},
        listener_ports=(8080, 8443),
        service_ports=_status_ports(("http2", 80, 8080), ("https", 443, 8443)),
        replicas=1,
        index=1,
    ),
    # Helm chart istio/gateway, release "istio-ingress" in its own namespace.
    Gateway(
        namespace="istio-ingress",
        name="istio-ingress",
        pod_labels={
            "app": "istio-ingress",
            "istio": "ingress",
            "sidecar.istio.io/inject": "true",
            "service.istio.io/canonical-name": "istio-ingress",
            "service.istio.io/canonical-revision": "latest",
        },
        selector={"app": "istio-ingress", "istio": "ingress"},
        listener_ports=(80, 443),
        service_ports=_status_ports(("http2", 80, 80), ("https", 443, 443)),
        replicas=1,
        index=2,
    ),
    # Gateway API: istiod auto-deploys "<gateway>-istio" for Gateway "web-gateway".
    Gateway(
        namespace="web",
        name="web-gateway-istio",
        pod_labels={
            "gateway.networking.k8s.io/gateway-name": "web-gateway",
            "istio.io/gateway-name": "web-gateway",
            "service.istio.io/canonical-name": "web-gateway-istio",
            "service.istio.io/canonical-revision": "latest",
            "sidecar.istio.io/inject": "false",
        },
        selector={"gateway.networking.k8s.io/gateway-name": "web-gateway"},
        listener_ports=(80,),
        service_ports=_status_ports(("http", 80, 80)),
        replicas=1,
        index=3,
        deployment_labels={
            "gateway.networking.k8s.io/gateway-name": "web-gateway",
            "gateway.istio.io/managed": "istio.io-gateway-controller",
        },
    ),
    # A gateway served by a revisioned control plane ("canary").
    Gateway(
        namespace="istio-canary",
        name="istio-ingressgateway-canary",
        pod_labels={
            "app": "istio-ingressgateway-canary",
            "istio": "ingressgateway-canary",
            "istio.io/rev": "canary",
            "service.istio.io/canonical-name": "istio-ingressgateway-canary",
            "service.istio.io/canonical-revision": "canary",
            "sidecar.istio.io/inject": "false",
        },
        selector={"app": "istio-ingressgateway-canary", "istio": "ingressgateway-canary"},
        listener_ports=(8080, 8443),
        service_ports=_status_ports(("http2", 80, 8080), ("https", 443, 8443)),
        replicas=1,
        index=4,
    ),
    # A second IstioOperator gateway in the root namespace, with several replicas.
    Gateway(
        namespace="istio-system",
        name="istio-internalgateway",
        pod_labels={
            "app": "istio-internalgateway",
            "istio": "internalgateway",
            "istio.io/rev": "default",
            "operator.istio.io/component": "IngressGateways",
            "service.istio.io/canonical-name": "istio-internalgateway",
            "service.istio.io/canonical-revision": "latest",
            "sidecar.istio.io/inject": "false",
        },
        selector={"app": "istio-internalgateway", "istio": "internalgateway"},
        listener_ports=(8080, 8443),
        service_ports=_status_ports(("http2", 80, 8080), ("https", 443, 8443)),
        replicas=3,
        index=5,
        service_type="ClusterIP",
    ),
)


# ---------------------------------------------------------------- Kubernetes objects


def namespace_manifests() -> list[JSON]:
    names = sorted({gw.namespace for gw in SEEDED})
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]


def deployment_manifest(gw: Gateway) -> JSON:
    ports: list[JSON] = [
        {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
        {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
    ]
    ports += [{"containerPort": p, "protocol": "TCP"} for p in gw.listener_ports]
    labels = {**gw.selector, **gw.deployment_labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": gw.name, "namespace": gw.namespace, "labels": labels},
        "spec": {
            "replicas": gw.replicas,
            "selector": {"matchLabels": gw.selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {
                    "labels": gw.pod_labels,
                    "annotations": {
                        "prometheus.io/port": "15020",
                        "prometheus.io/scrape": "true",
                        "prometheus.io/path": "/stats/prometheus",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "istio-proxy",
                            "image": PROXY_IMAGE,
                            "args": [
                                "proxy",
                                "router",
                                "--domain",
                                "$(POD_NAMESPACE).svc.cluster.local",
                            ],
                            "env": [
                                {
                                    "name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                }
                            ],
                            "ports": ports,
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz/ready", "port": 15021},
                                "periodSeconds": 2,
                            },
                        }
                    ],
                },
            },
        },
    }


def service_manifest(gw: Gateway) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": gw.name, "namespace": gw.namespace, "labels": dict(gw.selector)},
        "spec": {
            "type": gw.service_type,
            "selector": gw.selector,
            "ports": [
                {"name": n, "port": p, "targetPort": t, "protocol": "TCP"}
                for (n, p, t) in gw.service_ports
            ],
        },
    }


def node_manifests(count: int = 2) -> list[JSON]:
    nodes: list[JSON] = []
    for i in range(count):
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"kwok-node-{i}",
                    # kwok manages nodes carrying this annotation (kwokctl's default selector).
                    "annotations": {
                        "node.alpha.kubernetes.io/ttl": "0",
                        "kwok.x-k8s.io/node": "fake",
                    },
                    "labels": {
                        "kubernetes.io/hostname": f"kwok-node-{i}",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "spec": {"providerID": f"kwok://kwok-node-{i}"},
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                },
            }
        )
    return nodes


# ---------------------------------------------------------------- Envoy configuration


def _hcm(stat_prefix: str, body: str) -> JSON:
    """An HTTP connection manager shaped like istiod's gateway listeners (timers included)."""
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": stat_prefix,
            "use_remote_address": True,
            "stream_idle_timeout": "0s",
            "common_http_protocol_options": {"idle_timeout": "3600s"},
            "normalize_path": True,
            "route_config": {
                "name": stat_prefix,
                "virtual_hosts": [
                    {
                        "name": "lab",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": body}},
                            }
                        ],
                    }
                ],
            },
            "http_filters": [
                {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}
            ],
        },
    }


def base_listeners(gw: Gateway) -> list[JSON]:
    """The dynamic listeners istiod would send this gateway before any EnvoyFilter."""
    out: list[JSON] = []
    for port in gw.listener_ports:
        name = f"0.0.0.0_{port}"
        out.append(
            {
                "@type": LISTENER_TYPE,
                "name": name,
                "address": {"socket_address": {"address": gw.address, "port_value": port}},
                "filter_chains": [{"filters": [_hcm(f"outbound_{name}", f"{gw.key} :{port}\n")]}],
                "continue_on_listener_filters_timeout": True,
            }
        )
    return out


def lds_version(listeners: list[JSON]) -> str:
    """The version_info of an LDS file: a digest of its listeners (the stand-in uses the same)."""
    return hashlib.sha256(json.dumps(listeners, sort_keys=True).encode()).hexdigest()[:12]


def lds_document(listeners: list[JSON]) -> JSON:
    return {"version_info": lds_version(listeners), "resources": listeners}


def bootstrap(gw: Gateway, lds_path: str) -> JSON:
    """A bootstrap with Istio's static health (15021) and Prometheus (15090) listeners."""
    ip = gw.address
    node_id = f"router~{ip}~{gw.name}-lab.{gw.namespace}~{gw.namespace}.svc.cluster.local"

    def static_listener(port: int, prefix: str, route: JSON) -> JSON:
        return {
            "address": {"socket_address": {"address": ip, "port_value": port}},
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": HCM_TYPE,
                                "stat_prefix": f"static_{port}",
                                "route_config": {
                                    "virtual_hosts": [
                                        {
                                            "name": "backend",
                                            "domains": ["*"],
                                            "routes": [{"match": {"prefix": prefix}, **route}],
                                        }
                                    ]
                                },
                                "http_filters": [
                                    {
                                        "name": "envoy.filters.http.router",
                                        "typed_config": {"@type": ROUTER_TYPE},
                                    }
                                ],
                            },
                        }
                    ]
                }
            ],
        }

    return {
        "node": {"id": node_id, "cluster": f"{gw.name}.{gw.namespace}"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": gw.admin_port}}
        },
        "static_resources": {
            "listeners": [
                static_listener(
                    15090,
                    "/stats/prometheus",
                    {"route": {"cluster": "prometheus_stats"}},
                ),
                static_listener(
                    15021,
                    "/healthz/ready",
                    {"direct_response": {"status": 200}},
                ),
            ],
            "clusters": [
                {
                    "name": "prometheus_stats",
                    "type": "STATIC",
                    "connect_timeout": "0.250s",
                    "load_assignment": {
                        "cluster_name": "prometheus_stats",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": gw.admin_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
        "dynamic_resources": {
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {"path": lds_path},
            }
        },
    }


def registry_entry(gw: Gateway, run_dir: str) -> JSON:
    """What the lab's helper processes need to know about one gateway (run/gateways.json)."""
    base = f"{run_dir}/envoy/{gw.slug}"
    return {
        "key": gw.key,
        "namespace": gw.namespace,
        "name": gw.name,
        "selector": gw.selector,
        "pod_labels": gw.pod_labels,
        "revision": gw.revision,
        "address": gw.address,
        "admin": f"127.0.0.1:{gw.admin_port}",
        "listener_ports": list(gw.listener_ports),
        "dir": base,
        "bootstrap": f"{base}/bootstrap.json",
        "lds": f"{base}/lds.json",
        "lds_base": f"{base}/lds-base.json",
        "pid_file": f"{base}/envoy.pid",
        "log": f"{base}/envoy.log",
    }


def dumps(obj: JSON) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"
