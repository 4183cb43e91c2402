"""The lab's seeded Istio gateways, as they are found in real clusters, and what configures them.

Each gateway is a real Deployment (+ Service) in the lab API server whose pods kwok runs, a real
Istio `Gateway` and `VirtualService` that give it listeners, and, per pod, one real Envoy that
takes its configuration from the real istiod over ADS (pod_wiring.py starts those, one network
namespace per pod, as a kubelet would). This module only describes and renders; it starts nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
INTERNAL_LISTENER_TYPE = (
    "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
)
# What the pods say they run: the proxy of the lab istiod's branch (kwok pulls nothing), and
# the version the proxies tell istiod in their node metadata (ISTIO_VERSION).
PROXY_IMAGE = "istio/proxyv2:1.31-dev"
PROXY_ISTIO_VERSION = "1.31.0"

# The lab's node network: every gateway pod gets a network namespace of its own with one address
# out of POD_NETWORK; the host (the "node") answers on NODE_ADDRESS, where istiod serves xDS.
NODE_ADDRESS = "198.18.64.1"
POD_NETWORK_FIRST, POD_NETWORK_LAST = "198.18.64.2", "198.18.127.254"
ROOT_NAMESPACE = "istio-system"
# One istiod per control-plane revision, each with plaintext xDS on a port of its own.
XDS_PORTS = {"default": 15010, "canary": 15110}
# The lab's stand-in for pilot-agent's SDS (lab/standin_sds): workload certificates for the proxies
# whose configuration asks the `sds-grpc` cluster for them (waypoints, sidecars).
SDS_PORT = 15400
# A revision tag (an injection alias, as `istioctl tag set prod-stable --revision canary` makes);
# the tests show istiod never matches config labelled with it.
REVISION_TAG = "prod-stable"
REVISION_TAG_TARGET = "canary"
# The upstream the lab's routes send /slow to: a server that tests start inside a pod's network
# namespace (as the incident lab's backend), reached through a ServiceEntry at 127.0.0.1.
SLOW_BACKEND_HOST = "slow-backend.lab.internal"
SLOW_BACKEND_PORT = 9000


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str  # the Deployment's (and Service's) name
    pod_labels: dict[str, str]
    selector: dict[str, str]  # the Deployment's matchLabels (what a workloadSelector would use)
    listener_ports: tuple[int, ...]  # the ports Envoy binds (the Service targetPorts)
    service_ports: tuple[tuple[str, int, int], ...]  # (name, port, targetPort)
    replicas: int
    service_type: str = "LoadBalancer"
    deployment_labels: dict[str, str] = field(default_factory=dict)
    gateway_api_name: str | None = None  # a Gateway API Gateway gives the listeners, not Istio's
    # A TLS Secret (credentialName) to terminate 443 with, which also gives an HTTP/3 listener;
    # without one, 443 is TLS passthrough.
    tls_credential: str | None = None
    # What an injector records as the pod annotation `istio.io/rev`: its own revision, which the
    # label may not be (a tag). The lab has no injector, so the pod template carries it.
    injected_revision: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def slug(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def revision(self) -> str:
        """The istiod revision that serves the pods."""
        return self.injected_revision or self.pod_labels.get("istio.io/rev", "default")


def _status_ports(*ports: tuple[str, int, int]) -> tuple[tuple[str, int, int], ...]:
    return (("status-port", 15021, 15021), *ports)


def _canonical(name: str, revision: str = "latest") -> dict[str, str]:
    """Istio's canonical service labels, as every install style sets them on gateway pods."""
    return {"service.istio.io/canonical-name": name,
            "service.istio.io/canonical-revision": revision}


_NO_SIDECAR = {"sidecar.istio.io/inject": "false"}


def _operator_gateway(namespace: str, name: str, istio: str, rev_label: str,
                      operator_labels: dict[str, str], canonical_revision: str = "latest",
                      replicas: int = 1, **options: Any) -> Gateway:
    """A gateway as IstioOperator (istioctl install) lays it out: `app` and `istio` labels that
    are also the Deployment's selector, and Service ports 80 and 443 onto Envoy's 8080 and 8443.
    """
    return Gateway(
        namespace=namespace,
        name=name,
        pod_labels={
            "app": name,
            "istio": istio,
            "istio.io/rev": rev_label,
            **operator_labels,
            **_canonical(name, canonical_revision),
            **_NO_SIDECAR,
        },
        selector={"app": name, "istio": istio},
        listener_ports=(8080, 8443),
        service_ports=_status_ports(("http2", 80, 8080), ("https", 443, 8443)),
        replicas=replicas,
        **options,
    )


SEEDED: tuple[Gateway, ...] = (
    # IstioOperator / istioctl install: the classic ingress gateway in the root namespace.
    _operator_gateway(
        "istio-system", "istio-ingressgateway", "ingressgateway", rev_label="default",
        operator_labels={"install.operator.istio.io/owning-resource": "unknown",
                         "operator.istio.io/component": "IngressGateways"},
    ),
    # Helm chart istio/gateway, release "istio-ingress" in its own namespace.
    Gateway(
        namespace="istio-ingress",
        name="istio-ingress",
        pod_labels={
            "app": "istio-ingress",
            "istio": "ingress",
            "sidecar.istio.io/inject": "true",
            **_canonical("istio-ingress"),
        },
        selector={"app": "istio-ingress", "istio": "ingress"},
        listener_ports=(80, 443),
        service_ports=_status_ports(("http2", 80, 80), ("https", 443, 443)),
        replicas=1,
        tls_credential="istio-ingress-cert",
    ),
    # Gateway API: istiod auto-deploys "<gateway>-istio" for Gateway "web-gateway".
    Gateway(
        namespace="web",
        name="web-gateway-istio",
        pod_labels={
            "gateway.networking.k8s.io/gateway-name": "web-gateway",
            "istio.io/gateway-name": "web-gateway",
            **_canonical("web-gateway-istio"),
            **_NO_SIDECAR,
        },
        selector={"gateway.networking.k8s.io/gateway-name": "web-gateway"},
        listener_ports=(80,),
        service_ports=_status_ports(("http", 80, 80)),
        replicas=1,
        gateway_api_name="web-gateway",
        deployment_labels={
            "gateway.networking.k8s.io/gateway-name": "web-gateway",
            "gateway.istio.io/managed": "istio.io-gateway-controller",
        },
    ),
    # A gateway pinned to a revisioned control plane ("canary"): label and injector agree.
    _operator_gateway(
        "istio-canary", "istio-ingressgateway-canary", "ingressgateway-canary",
        rev_label="canary", operator_labels={}, canonical_revision="canary",
        injected_revision=REVISION_TAG_TARGET,
    ),
    # A second IstioOperator gateway in the root namespace, with several replicas.
    _operator_gateway(
        "istio-system", "istio-internalgateway", "internalgateway", rev_label="default",
        operator_labels={"operator.istio.io/component": "IngressGateways"},
        replicas=3, service_type="ClusterIP",
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
    if gw.tls_credential:
        ports.append({"containerPort": 443, "protocol": "UDP"})
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
                        **({"istio.io/rev": gw.injected_revision} if gw.injected_revision
                           else {}),
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
            ] + (
                # HTTP/3 as Istio documents it: the same port over UDP on the Service, which is
                # what makes istiod add the QUIC listener.
                [{"name": "http3", "port": 443, "targetPort": 443, "protocol": "UDP"}]
                if gw.tls_credential else []
            ),
        },
    }


def revision_tag_manifests() -> list[JSON]:
    """The tag as `istioctl tag set` records it: a MutatingWebhookConfiguration labelled with
    the tag and its revision, which istiod's tag watcher reads. Without webhooks here: the lab
    has no injector, and a webhook that fails would block pod creation."""
    return [{
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": f"istio-revision-tag-{REVISION_TAG}",
            "labels": {"istio.io/tag": REVISION_TAG, "istio.io/rev": REVISION_TAG_TARGET},
        },
        "webhooks": [],
    }]


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




def rev_labels(gw: Gateway) -> dict[str, str]:
    """istiod skips objects labelled for another revision; unlabelled ones every istiod takes."""
    return {} if gw.revision == "default" else {"istio.io/rev": gw.revision}


def istio_gateway_manifest(gw: Gateway) -> JSON:
    """The Istio Gateway that gives this gateway's pods their listeners.

    Server ports are Service ports, as users write them: istiod maps each to the Service's
    targetPort (80 -> 8080 for the IstioOperator gateways), which is the port the listener binds.
    443 terminates TLS with the gateway's credential where it has one (istiod serves the Secret
    over ADS, and adds an HTTP/3 listener on UDP); elsewhere it is TLS passthrough.
    """
    servers: list[JSON] = []
    for name, port, _target in gw.service_ports:
        if name == "status-port":
            continue
        if port == 443 and gw.tls_credential:
            servers.append({"port": {"number": 443, "name": name, "protocol": "HTTPS"},
                            "hosts": ["*"],
                            "tls": {"mode": "SIMPLE", "credentialName": gw.tls_credential}})
        elif port == 443:
            servers.append({"port": {"number": 443, "name": name, "protocol": "TLS"},
                            "hosts": ["*"], "tls": {"mode": "PASSTHROUGH"}})
        else:
            servers.append({"port": {"number": port, "name": name, "protocol": "HTTP"},
                            "hosts": ["*"]})
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": gw.name, "namespace": gw.namespace, "labels": rev_labels(gw)},
        "spec": {"selector": dict(gw.selector), "servers": servers},
    }


def virtual_service_manifest(gw: Gateway) -> JSON:
    """Routes: /slow to the slow backend, everything else answered directly."""
    backend = {"host": SLOW_BACKEND_HOST, "port": {"number": SLOW_BACKEND_PORT}}
    spec: JSON = {
        "hosts": ["*"],
        "gateways": [gw.name],
        "http": [
            {"name": "slow", "match": [{"uri": {"prefix": "/slow"}}],
             "route": [{"destination": backend}]},  # Istio sets no route timeout by default
            {"name": "hello", "directResponse": {"status": 200,
                                                 "body": {"string": f"{gw.key}\n"}}},
        ],
    }
    if any(port == 443 for _n, port, _t in gw.service_ports) and not gw.tls_credential:
        spec["tls"] = [{"match": [{"port": 443, "sniHosts": ["*"]}],
                        "route": [{"destination": backend}]}]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": gw.name, "namespace": gw.namespace, "labels": rev_labels(gw)},
        "spec": spec,
    }


def service_entry_manifest(gw: Gateway) -> JSON:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": f"{gw.name}-slow-backend", "namespace": gw.namespace,
                     "labels": rev_labels(gw)},
        "spec": {
            "hosts": [SLOW_BACKEND_HOST],
            "exportTo": ["."],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": SLOW_BACKEND_PORT, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "127.0.0.1"}],
        },
    }


def gateway_api_manifests(gw: Gateway) -> list[JSON]:
    """A Gateway API Gateway and HTTPRoute, as a user of the Gateway API style writes them.

    istiod's deployment controller is off in the lab (it would deploy a real image), so the
    Deployment that it would make is seeded like the others, with the labels it would carry.
    """
    assert gw.gateway_api_name
    backend = {"group": "networking.istio.io", "kind": "Hostname", "name": SLOW_BACKEND_HOST,
               "port": SLOW_BACKEND_PORT}
    listeners = [{"name": name, "port": port, "protocol": "HTTP",
                  "allowedRoutes": {"namespaces": {"from": "Same"}}}
                 for name, port, _target in gw.service_ports if name != "status-port"]
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "istio"},
         "spec": {"controllerName": "istio.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": gw.gateway_api_name, "namespace": gw.namespace},
         "spec": {"gatewayClassName": "istio", "listeners": listeners}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": gw.gateway_api_name, "namespace": gw.namespace},
         "spec": {"parentRefs": [{"name": gw.gateway_api_name}],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/slow"}}],
                             "backendRefs": [backend]}]}},
    ]


def credential_manifests(gw: Gateway, cert_pem: str, key_pem: str) -> list[JSON]:
    """The TLS Secret, and the Role the istio/gateway chart gives a gateway to read Secrets.

    istiod serves a credential to a proxy only if the proxy's service account may read Secrets
    in that namespace (a SubjectAccessReview).
    """
    if not gw.tls_credential:
        return []
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    name = f"{gw.name}-sds"
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": gw.tls_credential, "namespace": gw.namespace},
         "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem)}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": gw.namespace},
         "rules": [{"apiGroups": [""], "resources": ["secrets"],
                    "verbs": ["get", "watch", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": gw.namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": "default",
                       "namespace": gw.namespace}]},
    ]


def istio_manifests(gw: Gateway) -> list[JSON]:
    """The routing objects that give this gateway's pods their listeners."""
    if gw.gateway_api_name:
        return [*gateway_api_manifests(gw), service_entry_manifest(gw)]
    return [istio_gateway_manifest(gw), virtual_service_manifest(gw), service_entry_manifest(gw)]


# ---------------------------------------------------------------- Envoy bootstrap


@dataclass(frozen=True)
class PodIdentity:
    """What a gateway pod's Envoy tells istiod about itself, as pilot-agent would."""

    namespace: str
    name: str  # the pod's
    uid: str
    labels: dict[str, str]
    instance_ip: str  # the pod IP in the API server: istiod finds the pod's Services by it
    address: str  # the address of the pod's own network namespace on this machine
    deployment: str
    service_account: str
    revision: str
    token: str  # its service account token (audience istio-ca), sent to istiod as pilot-agent does
    node_type: str = "router"  # pilot-agent's `proxy <type>`: router, waypoint, sidecar
    env_metadata: dict[str, str] = field(default_factory=dict)  # from ISTIO_META_* env vars


def _static_http_listener(port: int, prefix: str, route: JSON) -> JSON:
    return {
        "name": f"0.0.0.0_{port}_static",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM_TYPE,
                "stat_prefix": f"static_{port}",
                "route_config": {"virtual_hosts": [{
                    "name": "backend", "domains": ["*"],
                    "routes": [{"match": {"prefix": prefix}, **route}],
                }]},
                "http_filters": [{"name": "envoy.filters.http.router",
                                  "typed_config": {"@type": ROUTER_TYPE}}],
            },
        }]}],
    }


def _static_cluster(name: str, address: str, port: int, http2: bool = False) -> JSON:
    cluster: JSON = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": address, "port_value": port}}}}]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def ads_bootstrap(pod: PodIdentity, admin_port: int = 15000) -> JSON:
    """An Envoy bootstrap like pilot-agent's: LDS and CDS over ADS from istiod.

    The node id and metadata are the ones istiod reads to find the pod (node type, namespace,
    name, labels, instance IPs, cluster id; the pod's ISTIO_META_* env vars, as pilot-agent
    copies them, under the fixed keys); the static 15021 and 15090 listeners stand where Istio's
    bootstrap has them (15021 answers 200 at once: nothing here plays pilot-agent's readiness
    check). The admin binds the pod's own address, where kwok's port-forward reaches it.
    """
    ns = pod.namespace
    node_id = f"{pod.node_type}~{pod.instance_ip}~{pod.name}.{ns}~{ns}.svc.cluster.local"
    metadata = {
        **pod.env_metadata,
        "NAMESPACE": ns,
        "NAME": pod.name,
        "POD_NAME": pod.name,
        "WORKLOAD_NAME": pod.deployment,
        "OWNER": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{pod.deployment}",
        "SERVICE_ACCOUNT": pod.service_account,
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": "cluster.local",
        "ISTIO_VERSION": PROXY_ISTIO_VERSION,
        "INSTANCE_IPS": pod.instance_ip,
        "LABELS": dict(pod.labels),
        "REVISION": pod.revision,
    }
    bootstrap: JSON = {
        "node": {"id": node_id, "cluster": f"{pod.deployment}.{ns}", "metadata": metadata},
        "admin": {"address": {"socket_address": {"address": pod.address,
                                                 "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{
                    "envoy_grpc": {"cluster_name": "xds-grpc"},
                    "initial_metadata": [{"key": "authorization",
                                          "value": f"Bearer {pod.token}"}],
                }],
            },
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "listeners": [
                _static_http_listener(15090, "/stats/prometheus",
                                      {"route": {"cluster": "prometheus_stats"}}),
                _static_http_listener(15021, "/healthz/ready",
                                      {"direct_response": {"status": 200}}),
            ],
            "clusters": [
                _static_cluster("prometheus_stats", pod.address, admin_port),
                _static_cluster("xds-grpc", NODE_ADDRESS, XDS_PORTS[pod.revision], http2=True),
            ],
        },
    }
    if pod.node_type != "router":
        # istiod gives waypoints (and sidecars) TLS that names SDS secrets ("default", "ROOTCA")
        # from pilot-agent's `sds-grpc` cluster; without them their clusters never warm.
        bootstrap["static_resources"]["clusters"].append(
            _static_cluster("sds-grpc", NODE_ADDRESS, SDS_PORT, http2=True))
    if pod.node_type == "waypoint":
        # pilot-agent's bootstrap turns on internal listeners, which a waypoint's xDS uses.
        bootstrap["bootstrap_extensions"] = [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {"@type": INTERNAL_LISTENER_TYPE},
        }]
    return bootstrap


def dumps(obj: JSON) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"
