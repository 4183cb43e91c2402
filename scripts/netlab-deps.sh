#!/usr/bin/env bash
# Debian packages the incident lab needs (tests/netns, make demo): iproute2 for namespaces,
# veths and ss; nftables for the balancer; conntrack to read its flows; procps for sysctl;
# tcpdump for the capture; curl for Envoy's admin inside a namespace; openssl for the lab
# cluster's self-signed gateway certificate; haproxy (TCP mode) for the proxying balancer and
# tinyproxy for the CONNECT proxy in the client's path (`probe`'s tests); dante-server and
# microsocks (SOCKS5) and stunnel4 (TLS in front of tinyproxy: an https:// proxy) for the
# proxies kubectl and the plugin are compared through.
# Idempotent: asks apt only when something is missing, and then refreshes its lists first.
set -euo pipefail
declare -A need=()
command -v ip >/dev/null || need[iproute2]=1
command -v ss >/dev/null || need[iproute2]=1
command -v nft >/dev/null || need[nftables]=1
command -v conntrack >/dev/null || need[conntrack]=1
command -v sysctl >/dev/null || need[procps]=1
command -v tcpdump >/dev/null || need[tcpdump]=1
command -v curl >/dev/null || need[curl]=1
command -v openssl >/dev/null || need[openssl]=1
command -v haproxy >/dev/null || need[haproxy]=1
command -v tinyproxy >/dev/null || need[tinyproxy]=1
command -v danted >/dev/null || need[dante-server]=1
command -v microsocks >/dev/null || need[microsocks]=1
command -v stunnel4 >/dev/null || need[stunnel4]=1
if ((${#need[@]})); then
  echo "netlab-deps: installing ${!need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${!need[@]}" \
    >/dev/null
fi
