#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the lab cluster's binaries from pinned Go modules (lab/versions.env) into the cache:
#   ${KEEPALIVE_CACHE:-~/.cache/kubectl-keepalive}/bin/<name>-<version>
# builds istiod (pilot-discovery) and istioctl from the istio.io/istio module and takes Istio's CRD
# file from the same module into the cache; builds lab/standin_sds (the lab's stand-in for pilot-agent's SDS).
# A part is rebuilt only when its pinned version changes; a warm cache makes this a fast no-op.
# Usage: lab/build-binaries.sh [--print]   (--print: only print the paths, build nothing)
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

if [[ "${1:-}" == "--print" ]]; then
  for f in "${KUBE_APISERVER_BIN}" "${KUBE_CONTROLLER_MANAGER_BIN}" "${KUBE_SCHEDULER_BIN}" \
    "${ETCD_BIN}" "${KWOK_BIN}" "${KWOKCTL_BIN}" "${ISTIO_CRDS}" "${GATEWAY_API_CRDS}" \
    "${PILOT_DISCOVERY_BIN}" "${ISTIOCTL_BIN}" "${STANDIN_SDS_BIN}"; do
    echo "${f}"
  done
  exit 0
fi

command -v go >/dev/null || lab_die "go is needed to build the lab binaries"
mkdir -p "${LAB_BIN}" "${LAB_BUILD}"

# Module mode everywhere, no VCS stamping (module zips carry no VCS data), lean binaries.
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local
GO_BUILD_FLAGS=(-trimpath)

all_present() {
  local f
  for f in "$@"; do
    [[ -x "${f}" ]] || return 1
  done
}

# go mod download -json MODULE@VERSION -> the module's directory in the module cache.
module_dir() {
  local json
  json="$(cd "${LAB_BUILD}" && go mod download -json "$1")"
  python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])' <<<"${json}"
}

build_kubernetes() {
  if all_present "${KUBE_APISERVER_BIN}" "${KUBE_CONTROLLER_MANAGER_BIN}" "${KUBE_SCHEDULER_BIN}"; then
    lab_log "kubernetes ${KUBERNETES_VERSION}: cached"
    return
  fi
  lab_log "kubernetes ${KUBERNETES_VERSION}: building kube-apiserver, kube-controller-manager, kube-scheduler"
  local kdir staging_version major minor wrap out
  kdir="$(module_dir "k8s.io/kubernetes@${KUBERNETES_VERSION}")"
  # v1.37.2 -> v0.37.2: the published tag of every staging module.
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  major="1"
  minor="$(echo "${KUBERNETES_VERSION}" | cut -d. -f2)"

  wrap="${LAB_BUILD}/kubernetes-${KUBERNETES_VERSION}"
  mkdir -p "${wrap}"
  {
    echo "module keepalive.lab/kubernetes-build"
    echo
    echo "go $(awk '$1 == "go" {print $2; exit}' "${kdir}/go.mod")"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo
    echo "replace ("
    # Every staging module that k/k requires as v0.0.0 (it points them at ./staging) gets its published tag.
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "${kdir}/go.mod" | sort -u |
      while read -r m; do echo "	${m} => ${m} ${staging_version}"; done
    echo ")"
  } >"${wrap}/go.mod.new"
  if ! cmp -s "${wrap}/go.mod.new" "${wrap}/go.mod"; then
    mv "${wrap}/go.mod.new" "${wrap}/go.mod"
    rm -f "${wrap}/go.sum"
  else
    rm -f "${wrap}/go.mod.new"
  fi

  # The same version stamps as k/k's hack/lib/version.sh, so --version and /version are right.
  local build_date ldflags="-s -w" key val
  build_date="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["Time"])' \
    "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.info" 2>/dev/null || echo "1970-01-01T00:00:00Z")"
  for kv in "gitVersion=${KUBERNETES_VERSION}" "gitMajor=${major}" "gitMinor=${minor}" \
    "gitTreeState=clean" "buildDate=${build_date}"; do
    key="${kv%%=*}"
    val="${kv#*=}"
    ldflags+=" -X k8s.io/component-base/version.${key}=${val} -X k8s.io/client-go/pkg/version.${key}=${val}"
  done

  out="$(mktemp -d "${LAB_BUILD}/out.XXXXXX")"
  (
    cd "${wrap}"
    go get "k8s.io/kubernetes@${KUBERNETES_VERSION}"
    go build "${GO_BUILD_FLAGS[@]}" -ldflags="${ldflags}" -o "${out}/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
  )
  mv "${out}/kube-apiserver" "${KUBE_APISERVER_BIN}"
  mv "${out}/kube-controller-manager" "${KUBE_CONTROLLER_MANAGER_BIN}"
  mv "${out}/kube-scheduler" "${KUBE_SCHEDULER_BIN}"
  rmdir "${out}"
}

build_kwok() {
  if all_present "${KWOK_BIN}" "${KWOKCTL_BIN}"; then
    lab_log "kwok ${KWOK_VERSION}: cached"
    return
  fi
  lab_log "kwok ${KWOK_VERSION}: building kwok, kwokctl"
  local out ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  # kwokctl derives component flags from the Kubernetes version it believes it runs.
  ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
  out="$(mktemp -d "${LAB_BUILD}/out.XXXXXX")"
  (
    cd "${LAB_BUILD}"
    GOBIN="${out}" go install "${GO_BUILD_FLAGS[@]}" -ldflags="${ldflags}" \
      "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
  )
  mv "${out}/kwok" "${KWOK_BIN}"
  mv "${out}/kwokctl" "${KWOKCTL_BIN}"
  rmdir "${out}"
}

build_etcd() {
  if all_present "${ETCD_BIN}"; then
    lab_log "etcd ${ETCD_VERSION}: cached"
    return
  fi
  lab_log "etcd ${ETCD_VERSION}: building"
  local wrap out ldflags
  wrap="${LAB_BUILD}/etcd-${ETCD_VERSION}"
  mkdir -p "${wrap}"
  # The etcd command is a one-line main around the server module's etcdmain package.
  cat >"${wrap}/go.mod" <<EOF
module keepalive.lab/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
EOF
  cat >"${wrap}/main.go" <<'EOF'
// Command etcd for the lab cluster: the etcd server's own entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
  ldflags="-s -w"
  out="$(mktemp -d "${LAB_BUILD}/out.XXXXXX")"
  (
    cd "${wrap}"
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    go build "${GO_BUILD_FLAGS[@]}" -ldflags="${ldflags}" -o "${out}/etcd" .
  )
  mv "${out}/etcd" "${ETCD_BIN}"
  rmdir "${out}"
}

fetch_istio_crds() {
  if [[ -s "${ISTIO_CRDS}" ]]; then
    lab_log "istio CRDs ${ISTIO_MODULE_VERSION}: cached"
    return
  fi
  lab_log "istio CRDs ${ISTIO_MODULE_VERSION}: downloading the istio.io/istio module"
  local idir src
  idir="$(module_dir "istio.io/istio@${ISTIO_MODULE_VERSION}")"
  src="${idir}/manifests/charts/base/files/crd-all.gen.yaml"
  [[ -s "${src}" ]] || lab_die "no ${src#"${idir}/"} in istio.io/istio@${ISTIO_MODULE_VERSION}"
  mkdir -p "$(dirname "${ISTIO_CRDS}")"
  # The module cache is read-only; the cached copy is an ordinary file.
  install -m 0644 "${src}" "${ISTIO_CRDS}.tmp"
  mv -f "${ISTIO_CRDS}.tmp" "${ISTIO_CRDS}"
}

fetch_gateway_api_crds() {
  if [[ -s "${GATEWAY_API_CRDS}" ]]; then
    lab_log "gateway API CRDs ${GATEWAY_API_VERSION}: cached"
    return
  fi
  lab_log "gateway API CRDs ${GATEWAY_API_VERSION}: downloading the sigs.k8s.io/gateway-api module"
  local gdir f
  gdir="$(module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")"
  mkdir -p "$(dirname "${GATEWAY_API_CRDS}")"
  # The standard channel's CRDs, one YAML stream (the admission policy file is not a CRD).
  for f in "${gdir}"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    [[ "${f}" == *_vap_* ]] && continue
    echo "---"
    cat "${f}"
  done >"${GATEWAY_API_CRDS}.tmp"
  grep -q "kind: CustomResourceDefinition" "${GATEWAY_API_CRDS}.tmp" ||
    lab_die "no CRDs under config/crd/standard in sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}"
  mv -f "${GATEWAY_API_CRDS}.tmp" "${GATEWAY_API_CRDS}"
}

build_istio() {
  if all_present "${PILOT_DISCOVERY_BIN}" "${ISTIOCTL_BIN}"; then
    lab_log "istio ${ISTIO_MODULE_VERSION}: cached"
    return
  fi
  lab_log "istio ${ISTIO_MODULE_VERSION}: building pilot-discovery (istiod) and istioctl"
  local idir out ldflags
  idir="$(module_dir "istio.io/istio@${ISTIO_MODULE_VERSION}")"
  # The version stamp Istio's Makefile would give a build of this branch ("<VERSION>-dev"), so
  # istiod reports a version that proxies and istioctl can compare.
  ldflags="-s -w -X istio.io/istio/pkg/version.buildVersion=$(tr -d '[:space:]' <"${idir}/VERSION")-dev"
  ldflags+=" -X istio.io/istio/pkg/version.buildGitRevision=${ISTIO_MODULE_VERSION##*-}"
  ldflags+=" -X istio.io/istio/pkg/version.buildStatus=Clean"
  out="$(mktemp -d "${LAB_BUILD}/out.XXXXXX")"
  (
    cd "${LAB_BUILD}"
    GOBIN="${out}" go install "${GO_BUILD_FLAGS[@]}" -ldflags="${ldflags}" \
      "istio.io/istio/pilot/cmd/pilot-discovery@${ISTIO_MODULE_VERSION}" \
      "istio.io/istio/istioctl/cmd/istioctl@${ISTIO_MODULE_VERSION}"
  )
  mv "${out}/pilot-discovery" "${PILOT_DISCOVERY_BIN}"
  mv "${out}/istioctl" "${ISTIOCTL_BIN}"
  rmdir "${out}"
}

build_sds() {
  if all_present "${STANDIN_SDS_BIN}"; then
    lab_log "standin-sds: cached"
    return
  fi
  lab_log "standin-sds: building (lab/standin_sds, against the istio module's go-control-plane and grpc)"
  local idir wrap
  idir="$(module_dir "istio.io/istio@${ISTIO_MODULE_VERSION}")"
  wrap="${LAB_BUILD}/sds"
  rm -rf "${wrap}"
  mkdir -p "${wrap}"
  cp "${LAB_DIR}/standin_sds/main.go" "${wrap}/"
  {
    echo "module keepalive.lab/standin_sds"
    echo
    echo "go $(awk '$1 == "go" {print $2; exit}' "${idir}/go.mod")"
    echo
    echo "require ("
    # The versions istiod itself is built with: already in the module cache.
    awk '$1 ~ /^(github.com\/envoyproxy\/go-control-plane\/envoy|google.golang.org\/grpc|google.golang.org\/protobuf)$/ {print "\t" $1 " " $2}' "${idir}/go.mod"
    echo ")"
  } >"${wrap}/go.mod"
  (
    cd "${wrap}"
    go build "${GO_BUILD_FLAGS[@]}" -ldflags="-s -w" -o "${STANDIN_SDS_BIN}.tmp" .
  )
  mv -f "${STANDIN_SDS_BIN}.tmp" "${STANDIN_SDS_BIN}"
}

# Sequential on purpose: each Go build already uses every core.
build_kwok
build_etcd
fetch_istio_crds
fetch_gateway_api_crds
build_kubernetes
build_istio
build_sds
lab_log "all parts ready under ${LAB_BIN}"
