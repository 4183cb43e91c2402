"""What to probe and for how long: targets from a URL, hold times from `--hold A[..B]`. Pure."""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass

from kubectl_keepalive import durations
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.probe.text import printable

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class Target:
    """One address to hold a connection to. `server_name` is the TLS SNI (None: none sent);
    `host_header` the HTTP Host. `listener_port` is the gateway port it leads to, when known."""

    scheme: str
    host: str
    port: int
    path: str
    host_header: str
    server_name: str | None
    label: str  # how the report names it: the URL, or the gateway and Service port
    listener_port: int | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:")


def check_host_name(value: str) -> str:
    """--host: a DNS name (or address) to send as Host and SNI, nothing that could split the
    request line."""
    name = value.strip()
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:[]*")
    if not name or len(name) > 253 or not set(name) <= allowed:
        raise UsageError(f"--host {printable(value, 60)!r} is not a host name")
    return name


def from_url(url: str, host: str | None) -> Target:
    """`--url http(s)://host[:port]/path`; `host` (--host) overrides Host and SNI."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UsageError(f"--url {printable(url, 80)!r}: not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise UsageError(f"--url {printable(url, 80)!r}: use http://HOST[:PORT]/PATH or "
                         "https://HOST[:PORT]/PATH")
    if parts.username is not None or parts.password is not None:
        raise UsageError("--url: credentials in the URL are not sent; leave them out")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isprintable() or " " in path or not path.isascii():
        raise UsageError(f"--url {printable(url, 80)!r}: the path must be printable ASCII "
                         "without spaces (percent-encode the rest)")
    number = port or DEFAULT_PORTS[scheme]
    name = check_host_name(host) if host else None
    target_host = parts.hostname
    if not set(target_host) <= HOST_CHARACTERS:
        raise UsageError(f"--url {printable(url, 80)!r}: the host must be an address or an "
                         "ASCII name (IDNA/punycode for others)")
    default_header = target_host if ":" not in target_host else f"[{target_host}]"
    if port and port != DEFAULT_PORTS[scheme]:
        default_header += f":{port}"
    server_name = name or (None if is_address(target_host) else target_host)
    return Target(scheme, target_host, number, path, name or default_header,
                  server_name if scheme == "https" else None,
                  label=f"{scheme}://{default_header}{path}")


def for_address(scheme: str, host: str, port: int, host_name: str | None, label: str,
                listener_port: int | None) -> Target:
    """A target found in the cluster: a balancer's address and a Service port."""
    name = check_host_name(host_name) if host_name else None
    header = host if ":" not in host else f"[{host}]"
    if port != DEFAULT_PORTS[scheme]:
        header += f":{port}"
    server_name = name or (None if is_address(host) else host)
    return Target(scheme, host, port, "/", name or header,
                  server_name if scheme == "https" else None, label, listener_port)


def parse_hold(text: str) -> tuple[int, int]:
    """`--hold 10s` or `--hold 5s..30s`: whole seconds, low <= high, at least 1 s."""
    low_text, sep, high_text = text.partition("..")
    low = durations.parse_duration(low_text, "--hold")
    high = durations.parse_duration(high_text, "--hold") if sep else low
    if low < 1 or high < low:
        raise UsageError(f"--hold {printable(text, 40)!r}: give a time of at least 1s, or "
                         "A..B with A <= B")
    return low, high


def spread(low: int, high: int, connections: int) -> list[float]:
    """`connections` hold times from low to high, evenly apart (all `low` when equal)."""
    if connections < 1 or connections > MAX_CONNECTIONS:
        raise UsageError(f"--connections must be between 1 and {MAX_CONNECTIONS}, "
                         f"got {connections}")
    if connections == 1:
        return [float(high)]
    step = (high - low) / (connections - 1)
    return [round(low + step * i, 3) for i in range(connections)]
