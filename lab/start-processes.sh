#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts the lab's own processes that are not running (istiod per revision, the SDS stand-in,
# the pod wiring, the control-plane restarter) on the running lab, as a node restarts what died,
# and nothing else: unlike cluster-up.sh it neither seeds the gateways again (which would undo a
# test's `kubectl scale`) nor waits for them. For faults: istiod killed, then started again.
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

[[ "${EUID}" -eq 0 ]] || lab_die "the lab needs root: each gateway pod gets a network namespace (ip netns)"
KUBECONFIG_PATH="${LAB_KWOK_WORKDIR}/clusters/${LAB_CLUSTER_NAME}/kubeconfig.yaml"
[[ -s "${KUBECONFIG_PATH}" ]] || lab_die "no running lab: start it with lab/cluster-up.sh"
# What cluster-up.sh gives labctl.py: the binaries it built.
KEEPALIVE_KUBECTL="$(lab_kubectl_bin)"
KEEPALIVE_ENVOY="$(lab_envoy_bin)"
export KEEPALIVE_KUBECTL KEEPALIVE_ENVOY
export KEEPALIVE_PILOT_DISCOVERY="${PILOT_DISCOVERY_BIN}"
export KEEPALIVE_KWOKCTL="${KWOKCTL_BIN}"
export KEEPALIVE_STANDIN_SDS="${STANDIN_SDS_BIN}"
python3 "${LAB_DIR}/labctl.py" start --kubeconfig "${KUBECONFIG_PATH}"
