"""`python -m kubectl_keepalive` runs the plugin as kubectl would."""

from kubectl_keepalive.cli.main import entry_point

entry_point()
