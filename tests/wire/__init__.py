"""The wire tier: the plugin's own Kubernetes client against servers and proxies on loopback.

The differential part runs the real kubectl beside the plugin against one recording API server
(kubectl is the oracle); the hostile part runs servers that lie, trickle, flood, redirect and
inject. Loopback only, every process bounded in time and cleaned up by pid.
"""
