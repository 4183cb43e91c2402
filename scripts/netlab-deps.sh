#!/usr/bin/env bash
# Debian packages the incident lab needs (tests/netns, make demo): nftables for the balancer,
# tcpdump for the capture, iproute2 for namespaces and ss, curl for Envoy admin in a namespace.
# Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v nft >/dev/null || need+=(nftables)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
