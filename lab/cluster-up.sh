#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts the lab cluster and prints the path of its kubeconfig as the last line on stdout.
#
#   kube-apiserver (RBAC on), etcd, kube-controller-manager, kube-scheduler and kwok, all built
#   from pinned Go modules (build-binaries.sh) and run by `kwokctl --runtime=binary` on 127.0.0.1;
#   two kwok nodes; Istio's real CRDs; istiod built from the istio.io/istio module (one per
#   revision); the seeded gateways with their Istio Gateways and VirtualServices (labctl.py seed);
#   one real Envoy per gateway pod, each in a network namespace of its own and configured by istiod
#   over ADS (labctl.py start runs pod_wiring.py, which plays the kubelet). Needs root (ip netns).
#
# Safe to run twice: a running cluster is reused (dead control-plane components and lab processes
# are restarted); one that still does not answer is recreated. Progress goes to stderr.
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

[[ "${EUID}" -eq 0 ]] || lab_die "the lab needs root: each gateway pod gets a network namespace (ip netns)"
# iproute2 for the pod namespaces, openssl for the gateway certificate (and the incident lab's tools).
bash "${LAB_DIR}/../scripts/netlab-deps.sh"
"${LAB_DIR}/build-binaries.sh"

KUBECTL="$(lab_kubectl_bin)"
export KEEPALIVE_KUBECTL="${KUBECTL}"
ENVOY="$(lab_envoy_bin)"
export KEEPALIVE_ENVOY="${ENVOY}"
export KEEPALIVE_PILOT_DISCOVERY="${PILOT_DISCOVERY_BIN}"
export KEEPALIVE_KWOKCTL="${KWOKCTL_BIN}"
export KEEPALIVE_STANDIN_SDS="${STANDIN_SDS_BIN}"
KWOKCTL=("${KWOKCTL_BIN}" --name "${LAB_CLUSTER_NAME}")
CLUSTER_DIR="${LAB_KWOK_WORKDIR}/clusters/${LAB_CLUSTER_NAME}"
KUBECONFIG_PATH="${CLUSTER_DIR}/kubeconfig.yaml"
mkdir -p "${LAB_RUN}"

k() {
  "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" "$@"
}

healthy() {
  [[ -s "${KUBECONFIG_PATH}" ]] && k get --raw /readyz >/dev/null 2>&1
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2" start="${SECONDS}"
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start > limit)); then
      lab_die "timed out after ${limit}s waiting for ${what}"
    fi
    sleep 0.5
  done
}

write_kwokctl_config() {
  cat >"${LAB_RUN}/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: ${KUBERNETES_VERSION}
  bindAddress: 127.0.0.1
  kubeAuthorization: true
  kubeApiserverBinary: ${KUBE_APISERVER_BIN}
  kubeControllerManagerBinary: ${KUBE_CONTROLLER_MANAGER_BIN}
  kubeSchedulerBinary: ${KUBE_SCHEDULER_BIN}
  kwokControllerBinary: ${KWOK_BIN}
  etcdBinary: ${ETCD_BIN}
  kubectlBinary: ${KUBECTL}
  cacheDir: ${KEEPALIVE_CACHE}/kwok-cache
  # Per-pod PortForward and Exec objects come from the API server (pod_wiring.py writes them).
  enableCRDs:
  - PortForward
  - Exec
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: advertise-address
    value: 127.0.0.1
  # A loopback advertise address is refused by the endpoint reconciler; nothing here needs the
  # in-cluster "kubernetes" Service endpoints.
  - key: endpoint-reconciler-type
    value: none
- name: kwok-controller
  extraEnvs:
  # kwok runs \`kubectl exec\` commands on this machine (as this user). Only the lab's shims
  # (pilot-agent, ss) are on its PATH, so an exec into a gateway pod finds nothing else by name.
  - name: PATH
    value: ${LAB_DIR}/shims
EOF
}

create_cluster() {
  write_kwokctl_config
  lab_log "creating cluster ${LAB_CLUSTER_NAME} (kwokctl --runtime=binary)"
  # Leave the user's ~/.kube/config alone: kwokctl records its context in a file of the lab's;
  # the cluster's own kubeconfig is the one printed at the end.
  "${KWOKCTL[@]}" create cluster --config "${LAB_RUN}/kwokctl.yaml" --kubeconfig "${LAB_RUN}/kwokctl-contexts.yaml" \
    --timeout 5m --wait 3m >&2
}

restart_dead_components() {
  # What a node's kubelet does for static pods: start the control-plane components that exited
  # (kube-controller-manager and kube-scheduler exit when they lose their lease). kwokctl starts
  # only the components that are not running, and takes a zombie's pid for a running one:
  # control_plane.py forgets the dead ones' pid files first.
  python3 "${LAB_DIR}/control_plane.py" --once --cluster-dir "${CLUSTER_DIR}" \
    --cluster-name "${LAB_CLUSTER_NAME}" --kwokctl "${KWOKCTL_BIN}" >&2
}

if [[ -d "${CLUSTER_DIR}" ]]; then
  restart_dead_components || lab_log "could not restart the cluster's components"
  for _ in $(seq 1 20); do healthy && break; sleep 0.5; done
fi

if [[ -d "${CLUSTER_DIR}" ]] && ! healthy; then
  # A half-dead cluster (a component gone, or none left after a reboot) is cheaper to recreate than
  # to repair: the lab holds no state worth keeping.
  lab_log "cluster ${LAB_CLUSTER_NAME} exists but does not answer: recreating it"
  python3 "${LAB_DIR}/labctl.py" stop
  "${KWOKCTL[@]}" delete cluster --kubeconfig "${LAB_RUN}/kwokctl-contexts.yaml" >&2 || true
  rm -rf "${CLUSTER_DIR}"
fi

fresh=0
if ! healthy; then
  create_cluster
  fresh=1
fi
wait_for 120 "the API server" healthy

if ((fresh)) || ! k get crd envoyfilters.networking.istio.io httproutes.gateway.networking.k8s.io >/dev/null 2>&1; then
  lab_log "installing Istio CRDs from istio.io/istio@${ISTIO_MODULE_VERSION}"
  k apply --server-side --force-conflicts --field-manager=keepalive-lab -f "${ISTIO_CRDS}" >/dev/null
  lab_log "installing Gateway API CRDs from sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}"
  k apply --server-side --force-conflicts --field-manager=keepalive-lab -f "${GATEWAY_API_CRDS}" >/dev/null
fi
wait_for 60 "Istio CRDs established" k wait --for=condition=Established --timeout=5s \
  crd/envoyfilters.networking.istio.io crd/gateways.networking.istio.io \
  crd/virtualservices.networking.istio.io crd/destinationrules.networking.istio.io \
  crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io
wait_for 60 "EnvoyFilter to be served" k get envoyfilters.networking.istio.io -A
wait_for 60 "kwok PortForward/Exec CRDs" k get portforwards.kwok.x-k8s.io,execs.kwok.x-k8s.io -A

python3 "${LAB_DIR}/labctl.py" start --kubeconfig "${KUBECONFIG_PATH}"
# Seeding is a server-side apply: on a running cluster it restores what a test may have changed.
python3 "${LAB_DIR}/labctl.py" seed --kubeconfig "${KUBECONFIG_PATH}"
python3 "${LAB_DIR}/labctl.py" wait --kubeconfig "${KUBECONFIG_PATH}" --timeout 180
if ((fresh)); then
  lab_log "cluster ${LAB_CLUSTER_NAME} is ready"
else
  lab_log "cluster ${LAB_CLUSTER_NAME} was already running"
fi
echo "${KUBECONFIG_PATH}"
