"""Which proxy the API server is reached through, decided once for REST and streams alike.

As kubectl (client-go's ProxyFromEnvironment): the kubeconfig's `proxy-url` wins; else
HTTPS_PROXY (https servers) or HTTP_PROXY (http servers), upper or lower case, unless NO_PROXY
matches the server; localhost and loopback addresses are never proxied. Only http:// proxies
can carry the port-forward and exec websockets, so any other scheme is refused by name rather
than bypassed.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from kubectl_keepalive.errors import UsageError


@dataclass(frozen=True)
class Proxy:
    url: str
    source: str  # "proxy-url" or the environment variable it came from


def choose(server: str, proxy_url: str | None, env: Mapping[str, str]) -> Proxy | None:
    """The proxy for `server`, or None to connect directly."""
    if proxy_url:
        found = Proxy(proxy_url, "proxy-url")
    else:
        parts = urllib.parse.urlsplit(server)
        name = "HTTPS_PROXY" if parts.scheme == "https" else "HTTP_PROXY"
        value, source = _variable(env, name)
        if not value or _bypassed(parts.hostname or "", parts.port, env):
            return None
        found = Proxy(value if "://" in value else f"http://{value}", source)
    scheme = urllib.parse.urlsplit(found.url).scheme
    if scheme != "http" or not urllib.parse.urlsplit(found.url).hostname:
        hint = "" if found.source == "proxy-url" else " (or list the server in NO_PROXY)"
        raise UsageError(f"{found.source} {found.url}: only http:// proxies are supported, "
                         f"since port-forward and exec cannot tunnel otherwise{hint}")
    return found


def _variable(env: Mapping[str, str], name: str) -> tuple[str, str]:
    for key in (name, name.lower()):
        if env.get(key, "").strip():
            return env[key].strip(), key
    return "", name


def _bypassed(host: str, port: int | None, env: Mapping[str, str]) -> bool:
    if host == "localhost" or _loopback(host):
        return True
    value, _ = _variable(env, "NO_PROXY")
    for entry in (e.strip().lower() for e in value.split(",")):
        if entry == "*":
            return True
        if entry and _matches(host.lower(), port, entry):
            return True
    return False


def _matches(host: str, port: int | None, entry: str) -> bool:
    import ipaddress  # here: only a NO_PROXY to match pays for it

    try:  # an address or a CIDR range: addresses only
        network = ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        network = None
    if network is not None:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
    if entry_port and str(port) != entry_port:
        return False
    if name.startswith("."):  # subdomains only
        return host.endswith(name)
    return host == name or host.endswith(f".{name}")


def _has_port(entry: str) -> bool:
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and ":" not in head.strip("[]")


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
