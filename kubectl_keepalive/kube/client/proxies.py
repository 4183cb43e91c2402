"""Which proxy the API server is reached through, decided once for REST and streams alike.

As kubectl (client-go's ProxyFromEnvironment): the kubeconfig's `proxy-url` wins; else
HTTPS_PROXY (https servers) or HTTP_PROXY (http servers), upper or lower case, unless NO_PROXY
matches the server; localhost and loopback addresses are never proxied. The schemes are
kubectl's: http://, https:// (TLS to the proxy) and socks5:// (names resolved by the proxy);
any other is refused by name rather than bypassed. REST and the port-forward and exec
websockets take the same route (httppool, tunnels).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import ipaddress

    _Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

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
        if not value or _bypassed(server, env):
            return None
        found = Proxy(value if "://" in value else f"http://{value}", source)
    _check(found)
    return found


SCHEMES = ("http", "https", "socks5")  # client-go's list for proxy-url
# Go's net/http also takes socks5h from the environment: a name resolved by the proxy, which
# is what socks5 does in Go (and here) already.
ENV_SCHEMES = (*SCHEMES, "socks5h")


def _check(proxy: Proxy) -> None:
    shown = f"{proxy.source} {masked_url(proxy.url)}"
    try:
        parts = urllib.parse.urlsplit(proxy.url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        # Never the parser's words: they quote the text they stopped at, which may be a
        # password holding a '/', '?' or '#'.
        raise UsageError(f"{shown}: not a valid URL (is the port a number? a '/', '?', '#' "
                         "or '@' in a user name or password must be percent-encoded)") \
            from None
    if parts.scheme not in (SCHEMES if proxy.source == "proxy-url" else ENV_SCHEMES):
        hint = "" if proxy.source == "proxy-url" else " (or list the server in NO_PROXY)"
        raise UsageError(f"{shown}: unsupported scheme {parts.scheme!r}, must be http, https, "
                         f"or socks5, as in kubectl{hint}")
    if not parts.hostname:
        raise UsageError(f"{shown}: no host")
    if parts.scheme.startswith("socks5") and parts.username is not None:
        # RFC 1929 carries each in at most 255 bytes; the SOCKS library sends ASCII only.
        for what, value in (("user", parts.username), ("password", parts.password or "")):
            text = urllib.parse.unquote(value)
            if not text.isascii() or len(text) > 255:
                raise UsageError(f"{shown}: a SOCKS5 {what} must be ASCII, at most 255 "
                                 "characters")


def masked_url(url: str) -> str:
    """`url` with the password of its user info shown as `***`, as kubectl prints URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}{slash}{tail}"
    # No user info in the authority, but an '@' further on after `name:something` that is not
    # a port: a password holding an unencoded '/' (a broken URL). Hidden up to the last '@'.
    name, colon, port = authority.partition(":")
    if colon and not port.isdigit() and "@" in tail:
        return f"{scheme}{sep}{name}:***@{tail.rpartition('@')[2]}"
    return url


def _variable(env: Mapping[str, str], name: str) -> tuple[str, str]:
    for key in (name, name.lower()):
        if env.get(key, "").strip():
            return env[key].strip(), key
    return "", name


def _bypassed(server: str, env: Mapping[str, str]) -> bool:
    """Go's net/http ProxyFromEnvironment (golang.org/x/net/http/httpproxy) on NO_PROXY, as
    kubectl reads it: `localhost` (exactly so: `LOCALHOST` is proxied) and loopback addresses
    (IPv4-mapped ones too) never go through a proxy; entries are trimmed and lower-cased."""
    parts = urllib.parse.urlsplit(server)
    host = _raw_host(parts.netloc)
    address = _address(host)
    if host == "localhost" or (address is not None and address.is_loopback):
        return True
    value, _ = _variable(env, "NO_PROXY")
    port = str(parts.port or (443 if parts.scheme == "https" else 80))
    name = _idna(host.strip().lower())
    for entry in (e.strip().lower() for e in value.split(",")):
        if entry == "*":
            return True
        if entry and _matches(name, port, address, entry):
            return True
    return False


def _matches(host: str, port: str, address: _Address | None, entry: str) -> bool:
    """One NO_PROXY entry as httpproxy parses it: a CIDR range (any port; never with a
    port), an address (`[v6]:port` for a port), or a name matching itself and its subdomains
    (`.name` and `*.name`: subdomains only), with an optional `:port` (`name:` is any port).
    Addresses match address entries only; names are compared in IDNA (punycode) form."""
    import ipaddress  # here: only a NO_PROXY to match pays for it

    if "/" in entry:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            network = None
        if network is not None:
            return address is not None and address in network
    name, entry_port = _split_host_port(entry)
    if entry_port and entry_port != port:
        return False
    entry_address = _address(name)
    if entry_address is not None or address is not None:
        return entry_address is not None and entry_address == address
    if name.startswith("*."):
        name = name[1:]
    exact = not name.startswith(".")
    bare = _idna(name if exact else name[1:])
    return host.endswith(f".{bare}") or (exact and host == bare)


def _split_host_port(entry: str) -> tuple[str, str]:
    """Go's net.SplitHostPort where the entry has a port after any `]`; the whole entry with
    no port where it has none or cannot be split (`fd00::1`, `[fd00::1]`)."""
    if entry.rfind(":") <= entry.rfind("]"):
        return entry, ""
    if entry.startswith("["):
        inside, _, after = entry[1:].partition("]")
        return (inside, after[1:]) if after.startswith(":") else (entry, "")
    head, _, tail = entry.rpartition(":")
    return (entry, "") if ":" in head else (head, tail)


def _raw_host(netloc: str) -> str:
    """The host of a URL's authority as written (case kept), without brackets or port."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def _idna(name: str) -> str:
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _address(host: str) -> _Address | None:
    """An IP address (an IPv4-mapped IPv6 one as IPv4, as Go compares them), else None."""
    import ipaddress

    try:
        found: _Address = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(found, "ipv4_mapped", None)
    return mapped if mapped is not None else found
