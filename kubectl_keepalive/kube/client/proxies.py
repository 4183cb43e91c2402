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
        if not value or _bypassed(parts.hostname or "", parts.port, parts.scheme, env):
            return None
        found = Proxy(value if "://" in value else f"http://{value}", source)
    scheme = urllib.parse.urlsplit(found.url).scheme
    if scheme != "http" or not urllib.parse.urlsplit(found.url).hostname:
        hint = "" if found.source == "proxy-url" else " (or list the server in NO_PROXY)"
        raise UsageError(f"{found.source} {masked_url(found.url)}: only http:// proxies are "
                         f"supported, since port-forward and exec cannot tunnel otherwise{hint}")
    return found


def masked_url(url: str) -> str:
    """`url` with the password of its user info shown as `***`, as kubectl prints URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}{slash}{tail}"


def _variable(env: Mapping[str, str], name: str) -> tuple[str, str]:
    for key in (name, name.lower()):
        if env.get(key, "").strip():
            return env[key].strip(), key
    return "", name


def _bypassed(host: str, port: int | None, scheme: str, env: Mapping[str, str]) -> bool:
    if host == "localhost" or _loopback(host):
        return True
    value, _ = _variable(env, "NO_PROXY")
    port = port or (443 if scheme == "https" else 80)
    for entry in (e.strip().lower() for e in value.split(",")):
        if entry == "*":
            return True
        if entry and _matches(host.lower(), port, entry):
            return True
    return False


def _matches(host: str, port: int, entry: str) -> bool:
    """One NO_PROXY entry as Go's httpproxy reads it: an address or CIDR range (addresses
    only), else a name that matches itself and its subdomains (`.name` and `*.name`:
    subdomains only), either with an optional `:port`."""
    import ipaddress  # here: only a NO_PROXY to match pays for it

    name, entry_port = _split_port(entry)
    if entry_port is not None and entry_port != port:
        return False
    try:
        network = ipaddress.ip_network(name, strict=False)
    except ValueError:
        network = None
    if network is not None:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    if name.startswith("*."):
        name = name[1:]
    if name.startswith("."):
        return host.endswith(name)
    return host == name or host.endswith(f".{name}")


def _split_port(entry: str) -> tuple[str, int | None]:
    """`[v6]:port`, `name:port`, `v4:port` -> (address or name, port); else (entry, None)."""
    if entry.startswith("["):
        inside, _, after = entry[1:].partition("]")
        return inside, int(after[1:]) if after.startswith(":") and after[1:].isdigit() else None
    head, sep, tail = entry.rpartition(":")
    if sep and tail.isdigit() and ":" not in head:
        return head, int(tail)
    return entry, None


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
