"""The Examples section of `--help`, as kubectl's help has one for every command.

Each example is a comment line and a command; tests/unit/test_output_help.py parses every
command here with the plugin's own parser, so an example cannot name a flag that is gone.
"""

from __future__ import annotations

PLUGIN = """\
  # Keepalive on every gateway in a namespace, a row per gateway
  kubectl keepalive status -n istio-system

  # What enable would change, then enable it (asks first)
  kubectl keepalive diff -n istio-system --idle 60s
  kubectl keepalive enable -n istio-system --idle 60s --interval 10s --probes 3

  # Every timer that can cut a 10-minute request, the first one marked
  kubectl keepalive doctor -n istio-system --duration 10m"""

COMMANDS = {
    "status": """\
  # A row per gateway in the context's namespace; every namespace, with a summary
  kubectl keepalive status
  kubectl keepalive status -A

  # A row per pod and listener, with the filter and details
  kubectl keepalive status -n istio-system -o wide

  # For scripts: the JSON document, or parts of it as kubectl prints them
  kubectl keepalive status -A -o json
  kubectl keepalive status -A -o jsonpath='{range .gateways[*]}{.namespace}/{.name}{"\\n"}{end}'
  kubectl keepalive status -A -o custom-columns=NAME:.name,FILTER:.envoyfilter --sort-by=.name
  kubectl keepalive status -A -o name

  # An Envoy config_dump or `istioctl proxy-config listener -o json` output, no cluster
  kubectl keepalive status --from-file config_dump.json""",
    "diff": """\
  # What enable would change (exit 1 when it would change something)
  kubectl keepalive diff -n istio-system --idle 60s --interval 10s --probes 3

  # Only port 8080, as Envoy binds it; the plan as data
  kubectl keepalive diff -n istio-system --port 8080 -o json

  # What disable would change
  kubectl keepalive diff -n istio-system --disable""",
    "enable": """\
  # Keepalive 60s/10s/3 on every gateway in istio-system: write, roll, verify
  kubectl keepalive enable -n istio-system --idle 60s --interval 10s --probes 3

  # Without the prompt, once at most 2 requests are in flight per pod
  kubectl keepalive enable -n istio-system -y --when-quiet=2

  # The EnvoyFilter only, with no cluster (GitOps)
  kubectl keepalive enable --dry-run=client -o yaml -n istio-system \\
    -l app=istio-ingressgateway,istio=ingressgateway --port 8080 --port 8443""",
    "disable": """\
  # Remove the managed EnvoyFilter, roll the gateway, verify
  kubectl keepalive disable -n istio-system

  # What would be written, sent to the API server with dryRun=All
  kubectl keepalive disable -n istio-system --dry-run=server""",
    "doctor": """\
  # Every timer that can cut a 10-minute request through each gateway
  kubectl keepalive doctor -n istio-system --duration 10m

  # A gRPC call silent for 5 minutes, as JSON
  kubectl keepalive doctor -n istio-system --duration 30m --silence 5m --grpc -o json""",
    "probe": """\
  # Hold a connection to each gateway's balancer address past its idle timeout, ask again
  kubectl keepalive probe -n istio-system

  # One address, no cluster access: TLS with a server name, 6 minutes of silence
  kubectl keepalive probe --url https://203.0.113.7/healthz --host app.example.com --hold 6m

  # Six connections held from 1 to 6 minutes: when does the cut come?
  kubectl keepalive probe --url http://203.0.113.7/ --hold 1m..6m --connections 6""",
    "rbac": """\
  # What status, diff and doctor need, bound to a ServiceAccount
  kubectl keepalive rbac viewer --serviceaccount ci:reader

  # What enable and disable need too, as Roles in one namespace
  kubectl keepalive rbac operator -n istio-system --group platform-team""",
    "version": """\
  # The plugin's version and its python
  kubectl keepalive version""",
    "completion": """\
  # Shell completion through kubectl (>= 1.26): the script into a directory on PATH
  kubectl keepalive completion --install ~/.local/bin""",
}


def section(text: str) -> str:
    return f"\n\nExamples:\n{text}\n"
