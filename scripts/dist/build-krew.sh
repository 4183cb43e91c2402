#!/usr/bin/env bash
# Builds krew and validate-krew-manifest from the Go module sigs.k8s.io/krew at the pinned
# version into the cache (never the repo); a no-op when that version is already there.
# Prints the directory holding both binaries.
set -euo pipefail
KREW_VERSION="v0.4.3"
CACHE="${KEEPALIVE_CACHE:-$HOME/.cache/kubectl-keepalive}"
OUT="${CACHE}/bin/krew-${KREW_VERSION}"
if [[ ! -x "${OUT}/krew" || ! -x "${OUT}/validate-krew-manifest" ]]; then
  mkdir -p "${OUT}.tmp"
  echo "krew: building sigs.k8s.io/krew ${KREW_VERSION}" >&2
  GOBIN="${OUT}.tmp" GOFLAGS=-trimpath go install -ldflags="-s -w" \
    "sigs.k8s.io/krew/cmd/krew@${KREW_VERSION}" \
    "sigs.k8s.io/krew/cmd/validate-krew-manifest@${KREW_VERSION}" >&2
  rm -rf "${OUT}"
  mv "${OUT}.tmp" "${OUT}"
fi
echo "${OUT}"
