#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stops the lab: istiod, the pod wiring, every gateway pod Envoy and its network namespace, then the
# kwok cluster.
# Safe to run twice; logs stay under ${KEEPALIVE_CACHE}/run.
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

python3 "${LAB_DIR}/labctl.py" stop
CLUSTER_DIR="${LAB_KWOK_WORKDIR}/clusters/${LAB_CLUSTER_NAME}"
if [[ -d "${CLUSTER_DIR}" ]]; then
  if [[ -x "${KWOKCTL_BIN}" ]]; then
    "${KWOKCTL_BIN}" --name "${LAB_CLUSTER_NAME}" delete cluster --kubeconfig "${LAB_RUN}/kwokctl-contexts.yaml" >&2 || true
  fi
  rm -rf "${CLUSTER_DIR}"
  lab_log "cluster ${LAB_CLUSTER_NAME} deleted"
else
  lab_log "no cluster ${LAB_CLUSTER_NAME}"
fi
