"""Which proxy a server is reached through: kubeconfig, then the environment as client-go reads
it (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), loopback never, non-http proxies refused by name."""

from __future__ import annotations

import pytest

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kube.client.proxies import Proxy, choose

HTTPS = "https://api.example.com:6443"


def test_the_kubeconfig_wins_over_the_environment() -> None:
    env = {"HTTPS_PROXY": "http://env:3128"}
    assert choose(HTTPS, "http://kc:8080", env) == Proxy("http://kc:8080", "proxy-url")
    # Even for a loopback server: the kubeconfig says so explicitly.
    assert choose("https://127.0.0.1:6443", "http://kc:8080", {}) == Proxy(
        "http://kc:8080", "proxy-url")


@pytest.mark.parametrize(("server", "env", "expected"), [
    (HTTPS, {"HTTPS_PROXY": "http://p:3128"}, Proxy("http://p:3128", "HTTPS_PROXY")),
    (HTTPS, {"https_proxy": "p:3128"}, Proxy("http://p:3128", "https_proxy")),
    (HTTPS, {"HTTP_PROXY": "http://p:3128"}, None),  # the scheme's own variable only
    ("http://api.example.com", {"HTTP_PROXY": "http://p:3128"},
     Proxy("http://p:3128", "HTTP_PROXY")),
    ("https://localhost:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
    ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
    ("https://[::1]:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
    (HTTPS, {}, None),
])
def test_the_environment(server: str, env: dict[str, str], expected: Proxy | None) -> None:
    assert choose(server, None, env) == expected


@pytest.mark.parametrize(("no_proxy", "bypassed"), [
    ("*", True),
    ("example.com", True),  # the name and its subdomains
    (".example.com", True),
    ("api.example.com", True),
    ("other.com, example.com", True),
    ("ample.com", False),  # a suffix that is not a whole label
    (".api.example.com", False),  # subdomains only
    ("api.example.com:6443", True),
    ("api.example.com:443", False),
    ("*.example.com", True),  # Go drops the leading *
    ("*.api.example.com", False),
    ("10.0.0.0/8", False),  # ranges match addresses, not names
    ("", False),
])
def test_no_proxy(no_proxy: str, bypassed: bool) -> None:
    env = {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": no_proxy}
    assert (choose(HTTPS, None, env) is None) is bypassed


def test_no_proxy_ranges_and_addresses() -> None:
    env = {"HTTPS_PROXY": "http://p:3128", "no_proxy": "10.0.0.0/8,192.0.2.7"}
    assert choose("https://10.1.2.3:6443", None, env) is None
    assert choose("https://192.0.2.7:6443", None, env) is None
    assert choose("https://192.0.2.8:6443", None, env) is not None


@pytest.mark.parametrize(("proxy_url", "env", "names"), [
    ("socks5h://p:1080", {}, "proxy-url socks5h://p:1080"),
    ("socks4://p:1080", {}, "proxy-url socks4://p:1080"),
    ("ftp://p:21", {}, "proxy-url ftp://p:21"),
    (None, {"HTTPS_PROXY": "socks4://p:1080"}, "HTTPS_PROXY socks4://p:1080"),
])
def test_other_proxies_are_refused_by_name(proxy_url: str | None, env: dict[str, str],
                                           names: str) -> None:
    with pytest.raises(UsageError, match="must be http, https, or socks5") as refused:
        choose(HTTPS, proxy_url, env)
    assert str(refused.value).startswith(names)
    assert ("NO_PROXY" in str(refused.value)) is (proxy_url is None)


@pytest.mark.parametrize(("proxy_url", "env"), [
    ("socks5://p:1080", {}),
    ("socks5://jane:pw@p:1080", {}),
    ("https://p:3128", {}),
    (None, {"HTTPS_PROXY": "socks5://p:1080"}),
    (None, {"HTTPS_PROXY": "https://jane:pw@p:3128"}),
    (None, {"HTTPS_PROXY": "socks5h://p:1080"}),  # Go's net/http takes it from the environment
])
def test_https_and_socks5_proxies_are_taken_as_kubectl_takes_them(
        proxy_url: str | None, env: dict[str, str]) -> None:
    found = choose(HTTPS, proxy_url, env)
    assert found is not None and found.url == (proxy_url or next(iter(env.values())))


@pytest.mark.parametrize("proxy_url", [
    "http://", "socks5://jane:pw@:1080", "socks5://p:99999",
    "http://jane:pw/x@p:3128", "http://jane:pw?x@p:3128", "https://jane:pw#x@p:3128",
    "socks5://j%C3%A9:pw@p:1080", "socks5://jane:p%C3%A9@p:1080",
    "socks5://jane:" + "x" * 256 + "@p:1080",
])
def test_a_broken_proxy_url_is_refused_without_its_password(proxy_url: str) -> None:
    with pytest.raises(UsageError) as refused:
        choose(HTTPS, proxy_url, {})
    assert str(refused.value).startswith("proxy-url ")
    assert "pw" not in str(refused.value) and "x" * 20 not in str(refused.value)


@pytest.mark.parametrize(("server", "no_proxy", "bypassed"), [
    ("https://api.example.com", "api.example.com:443", True),  # the scheme's default port
    ("http://api.example.com", "api.example.com:80", True),
    ("https://api.example.com", "api.example.com:6443", False),
    ("https://[fd00::1]:6443", "[fd00::1]:6443", True),
    ("https://[fd00::1]:6443", "[fd00::1]:443", False),
    ("https://[fd00::1]:6443", "fd00::/16", True),
    ("https://10.1.2.3:6443", "10.1.2.3:6443", True),
])
def test_no_proxy_ports_and_ipv6(server: str, no_proxy: str, bypassed: bool) -> None:
    env = {"HTTPS_PROXY": "http://p:3128", "HTTP_PROXY": "http://p:3128", "NO_PROXY": no_proxy}
    assert (choose(server, None, env) is None) is bypassed


@pytest.mark.parametrize(("url", "shown"), [
    ("http://jane:pw@proxy:3128", "http://jane:***@proxy:3128"),
    ("socks5://jane:p@ss:w@proxy:1080/x", "socks5://jane:***@proxy:1080/x"),
    ("https://jane@proxy", "https://jane@proxy"),
    ("jane:pw@proxy:3128", "jane:***@proxy:3128"),
    ("https://api:6443/path@x", "https://api:6443/path@x"),
    # An unencoded '/', '?' or '#' in a password ends the authority early: still hidden.
    ("http://jane:p/ss-secret@proxy:3128", "http://jane:***@proxy:3128"),
    ("http://jane:p?ss-secret@proxy:3128", "http://jane:***@proxy:3128"),
    ("http://jane:p#ss-secret@proxy:3128", "http://jane:***@proxy:3128"),
])
def test_passwords_in_urls_are_masked(url: str, shown: str) -> None:
    from kubectl_keepalive.kube.client.proxies import masked_url

    assert masked_url(url) == shown


def test_a_refused_proxy_is_named_without_its_password() -> None:
    with pytest.raises(UsageError) as caught:
        choose(HTTPS, "ftp://jane:secret-pw@bastion:1080", {})
    assert "secret-pw" not in str(caught.value) and "jane:***@bastion" in str(caught.value)
