"""Which proxy a probe goes through, from the environment, as curl reads it.

curl (lib/url.c, lib/noproxy.c): an https:// URL uses `https_proxy`, then `HTTPS_PROXY`; an
http:// URL only `http_proxy` (never upper case, which a CGI environment could set from a
request header); both fall back to `all_proxy` / `ALL_PROXY`. `no_proxy`, then `NO_PROXY`: a
list split at commas and spaces; `*` alone bypasses every host; a name matches itself and its
subdomains (a leading dot is ignored); an address matches an address or a CIDR range. A proxy
without a scheme is http://. Pure: the environment is passed in.
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from kubectl_keepalive.errors import UsageError


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    source: str  # the environment variable it came from
    authorization: str | None = None  # a Proxy-Authorization value from user:password@

    @property
    def shown(self) -> str:
        """host:port, never the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return "", ""


def choose(scheme: str, host: str, env: Mapping[str, str]) -> Proxy | None:
    """The proxy for a probe of `scheme`://`host`, or None to connect directly."""
    names = ("https_proxy", "HTTPS_PROXY") if scheme == "https" else ("http_proxy",)
    value, source = _first(env, *names)
    if not value:
        value, source = _first(env, "all_proxy", "ALL_PROXY")
    if not value or bypassed(host, _first(env, "no_proxy", "NO_PROXY")[0]):
        return None
    return parse(value, source)


def parse(value: str, source: str) -> Proxy:
    url = value if "://" in value else f"http://{value}"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise UsageError(f"{source}: not a proxy URL") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise UsageError(f"{source}: only http:// proxies are supported (the probe tunnels "
                         "with CONNECT); list the target in NO_PROXY to go direct")
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return Proxy(parts.hostname, port or 1080, source, authorization)


def bypassed(host: str, no_proxy: str) -> bool:
    """curl's no_proxy match of `host` (a name or an address, without brackets)."""
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    name = host.strip("[]").rstrip(".").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = (
            ipaddress.ip_address(name))
    except ValueError:
        address = None
    for token in no_proxy.replace(" ", ",").split(","):
        token = token.strip().lower()
        if not token:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(token.strip("[]"), strict=False):
                    return True
            except ValueError:
                continue
            continue
        token = token.lstrip(".").rstrip(".")
        if token and (name == token or name.endswith("." + token)):
            return True
    return False
