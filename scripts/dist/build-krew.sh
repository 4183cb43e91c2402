#!/usr/bin/env bash
# Builds `krew` and `validate-krew-manifest` from the Go module sigs.k8s.io/krew at the pinned
# version into ${KEEPALIVE_CACHE:-~/.cache/kubectl-keepalive}/bin/krew-<version>/, outside the
# repository; a no-op when that version is already there, so only a new pin rebuilds.
# Prints that directory. Needs Go (the module proxy serves the sources).
set -euo pipefail
KREW_VERSION="v0.4.3"
CACHE="${KEEPALIVE_CACHE:-$HOME/.cache/kubectl-keepalive}"
OUT="${CACHE}/bin/krew-${KREW_VERSION}"
if [[ -x "${OUT}/krew" && -x "${OUT}/validate-krew-manifest" ]]; then
  echo "${OUT}"
  exit 0
fi
command -v go >/dev/null || { echo "error: building krew needs Go" >&2; exit 1; }
echo "build-krew: sigs.k8s.io/krew ${KREW_VERSION} with $(go version)" >&2
# Build beside the target and rename, so an interrupted build never looks finished.
mkdir -p "${CACHE}/bin"
TMP="$(mktemp -d "${CACHE}/bin/.krew-build.XXXXXX")"
trap 'rm -rf "${TMP}"' EXIT
# No version ldflags on purpose: krew then counts as a development build and never checks
# online for a newer krew. GOTOOLCHAIN=local: build with the Go that is here, fetch no other.
GOBIN="${TMP}" GOTOOLCHAIN=local CGO_ENABLED=0 go install -trimpath \
  "sigs.k8s.io/krew/cmd/krew@${KREW_VERSION}" \
  "sigs.k8s.io/krew/cmd/validate-krew-manifest@${KREW_VERSION}" >&2
chmod 755 "${TMP}"
rm -rf "${OUT}"
mv "${TMP}" "${OUT}"
trap - EXIT
echo "${OUT}"
