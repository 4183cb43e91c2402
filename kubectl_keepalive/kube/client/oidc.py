"""kubeconfig `auth-provider`s as kubectl v1.37 takes them: `oidc` works, the others are refused.

`oidc` (client-go's plugin/pkg/client/auth/oidc): the `id-token` goes out as a bearer token
while its JWT `exp` claim (read, not verified: the API server verifies it) is more than ten
seconds away. Otherwise, with a `refresh-token`, new tokens come from the issuer: its discovery
document (`<idp-issuer-url>/.well-known/openid-configuration`), then its `token_endpoint` with
grant_type=refresh_token, the client id and secret first as HTTP Basic credentials and, if
that fails, as form fields (golang.org/x/oauth2's probe); TLS checked against
`idp-certificate-authority(-data)` when given, else the system's CAs; `extra-scopes` is not sent
(client-go has not sent it since 1.8). The new id_token, and the refresh_token when the issuer
rotates it, are written back into the kubeconfig file that defines the user (kubeconfig_store),
as kubectl does. Beyond client-go: the lock is taken before the refresh, and the file is read
again under it, so a run that finds tokens another process has just stored uses them instead of
spending the refresh token twice; every answer is bounded in size and time; no redirect is
followed. No token or client secret ever appears in a message.

`gcp` and `azure` were removed from kubectl in 1.26 and are refused with their replacements;
any other name is refused by name, as kubectl does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kubectl_keepalive.errors import ClusterError, UsageError
from kubectl_keepalive.kube.client import kubeconfig_store
from kubectl_keepalive.terminal import safe

EXPIRY_DELTA = 10  # seconds: client-go's expiryDelta, taken from golang.org/x/oauth2
ISSUER_TIMEOUT = 30.0  # seconds for each of the two answers (client-go sets none)
MAX_DISCOVERY = 1 << 20  # bytes: a discovery document is a few KiB
MAX_TOKEN_ANSWER = 1 << 20  # golang.org/x/oauth2 reads at most 1 MiB of a token answer
LONG_AGO = -(1 << 63)  # an `exp` outside Go's int64 reads as a time long past
# Go's time.Unix counts from year 1 in an int64: a later `exp` wraps round into the past.
LATEST_GO_UNIX = (1 << 63) - 1 - 62135596800
CONFIG_KEYS = ("id-token", "refresh-token", "idp-issuer-url", "client-id", "client-secret",
               "idp-certificate-authority", "idp-certificate-authority-data", "extra-scopes")
REMOVED = {
    "gcp": "gke-gcloud-auth-plugin (an exec credential plugin)",
    "azure": "kubelogin (an exec credential plugin)",
}


class BadIdToken(ValueError):
    """An id-token whose expiry cannot be read; the message never holds the token."""


# -- reading a JWT's expiry, as client-go's idTokenExpired ------------------------------------

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object's (key, value) pairs in order, duplicates kept, as Go's decoder sees them."""


def _b64url(text: str) -> bytes:
    """Go's base64.RawURLEncoding: no padding, line breaks ignored, loose trailing bits."""
    text = text.replace("\r", "").replace("\n", "")
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise BadIdToken("the id-token's claims are not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadIdToken("the id-token's claims are not base64url") from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON to Go


def _int64(value: float) -> int:
    """Go's int64(f) for a finite float: in range, truncated; outside, the minimum."""
    if -(1 << 63) <= value < (1 << 63):
        return int(value)
    return LONG_AGO


def _number(text: str) -> int:
    """A JSON number as client-go's jsonTime reads it: an int64, else a float64 truncated."""
    if re.fullmatch(r"-?[0-9]+", text):
        whole = int(text)
        if -(1 << 63) <= whole < (1 << 63):
            return whole
    try:
        value = float(text)
    except (ValueError, OverflowError):
        raise BadIdToken("the id-token's exp claim is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadIdToken("the id-token's exp claim is out of range")
    return _int64(value)


def _exp(value: Any) -> int:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise BadIdToken("the id-token's exp claim is not a number")
    if isinstance(value, int):
        return value if -(1 << 63) <= value < (1 << 63) else _number(str(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise BadIdToken("the id-token's exp claim is out of range")
        return _int64(value)
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        return _number(value)
    raise BadIdToken("the id-token's exp claim is not a number")


def id_token_expiry(token: str) -> int:
    """The Unix time of the id-token's `exp` claim; LONG_AGO when it has none.

    BadIdToken, as client-go fails, for a token that is not three dot-separated parts, claims
    that are not base64url JSON, or an `exp` that is not a number. Like Go's decoder, `exp`
    is matched without regard to case, the last one wins, and the first bad one fails.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise BadIdToken("the id-token is not a JWT (three parts separated by dots)")
    payload = _b64url(parts[1]).decode("utf-8", errors="replace")
    try:
        claims = json.loads(payload, object_pairs_hook=_Pairs, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadIdToken("the id-token's claims are not JSON") from None
    if claims is None:
        return LONG_AGO
    if not isinstance(claims, _Pairs):
        raise BadIdToken("the id-token's claims are not a JSON object")
    expiry = LONG_AGO
    for key, value in claims:
        if key.isascii() and key.lower() == "exp":
            expiry = _exp(value)
    return expiry if expiry <= LATEST_GO_UNIX else LONG_AGO


def id_token_valid(token: str, now: float) -> bool:
    """client-go's rule: valid while now + 10 s is before `exp`."""
    return now + EXPIRY_DELTA < id_token_expiry(token)


# -- the providers ----------------------------------------------------------------------------

def auth_provider(user: Mapping[str, Any], user_name: str, label: str, origin: str,
                  env: Mapping[str, str]) -> OidcProvider:
    """The user's auth-provider, checked as kubectl checks it before any request (also when a
    token or password is there and wins); ClusterError for providers kubectl no longer has."""
    provider = user.get("auth-provider")
    name = str(provider.get("name", "")) if isinstance(provider, Mapping) else ""
    where = f"{label} (kubeconfig {origin})"
    if name in REMOVED:
        raise ClusterError(
            f'{where} authenticates with auth-provider "{name}", which kubectl removed in 1.26: '
            f"use {REMOVED[name]} instead, or pass --token")
    if name != "oidc":
        raise ClusterError(f"{where}: no auth-provider named {json.dumps(name)} (kubectl "
                           'knows only "oidc")')
    if user.get("exec") is not None:
        raise UsageError(f"{where}: auth-provider and exec cannot be used together")
    config = provider.get("config") if isinstance(provider, Mapping) else None
    if config is not None and not isinstance(config, Mapping):
        raise UsageError(f"{where}: auth-provider.config: expected a mapping")
    for key, value in (config or {}).items():
        if not isinstance(value, str):
            raise UsageError(f"{where}: auth-provider.config.{safe(str(key), 60)}: expected "
                             "a string")
    return OidcProvider(dict(config or {}), user_name, where, origin, env)


class OidcProvider:
    """One user's OIDC tokens: the id-token while valid, else refreshed and stored."""

    def __init__(self, config: dict[str, str], user_name: str, where: str, origin: str,
                 env: Mapping[str, str]) -> None:
        self._config = config
        self._user_name = user_name
        self._where = f"{where}: auth-provider oidc"
        self._origin = origin
        self._env = env
        self._lock = threading.Lock()
        self.refreshes = 0  # how often the issuer was asked, for tests
        for key in ("idp-issuer-url", "client-id"):
            if not config.get(key):
                raise UsageError(f"{self._where}: {key} must be set")
        data = config.get("idp-certificate-authority-data")
        self._ca_pem: bytes | None = None
        if data:
            try:
                self._ca_pem = base64.b64decode(data.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise UsageError(f"{self._where}: idp-certificate-authority-data: not valid "
                                 "base64") from None

    def _secrets(self) -> list[str]:
        return [v for k, v in self._config.items()
                if k in ("id-token", "refresh-token", "client-secret") and v]

    def _fail(self, message: str, *more_secrets: str) -> ClusterError:
        for secret in sorted({*self._secrets(), *more_secrets}, key=len, reverse=True):
            if len(secret) >= 4:
                message = message.replace(secret, "***")
        return ClusterError(f"{self._where}: {message}")

    def bearer(self) -> tuple[str, float]:
        """(id-token, until when to use it without looking again), refreshing when needed."""
        with self._lock:
            token = self._config.get("id-token") or ""
            if token and self._usable(token):
                return token, self._until(token)
            if not self._config.get("refresh-token"):
                raise ClusterError(f"{self._where}: no valid id-token, and no refresh-token to "
                                   "get one: log in again")
            with kubeconfig_store.locked(self._origin):
                stored = kubeconfig_store.provider_config(self._origin, self._user_name) or {}
                self._adopt(stored)
                token = self._config.get("id-token") or ""
                if not (token and self._usable(token, quiet=True)):
                    # Before the refresh: a token the issuer hands out must not be lost.
                    kubeconfig_store.check_writable(self._origin)
                    token = self._refresh()
            return token, self._until(token)

    def _usable(self, token: str, quiet: bool = False) -> bool:
        if any(ord(c) < 0x20 or c == "\x7f" for c in token):
            raise self._fail("the id-token holds a control character, which no HTTP header "
                             "may carry")
        try:
            return id_token_valid(token, time.time())
        except BadIdToken as exc:
            if quiet:
                return False
            raise self._fail(str(exc)) from None

    def _until(self, token: str) -> float:
        try:
            return float(id_token_expiry(token) - EXPIRY_DELTA)
        except BadIdToken:
            return 0.0  # looked at again on the next request, which then fails as client-go

    def _adopt(self, stored: Mapping[str, Any]) -> None:
        """Tokens another process stored since this one read the file."""
        for key in ("id-token", "refresh-token"):
            value = stored.get(key)
            if isinstance(value, str) and value:
                self._config[key] = value

    # -- the issuer ------------------------------------------------------------------------

    def _refresh(self) -> str:
        refresh_token = self._config["refresh-token"]
        self.refreshes += 1
        endpoint = self._token_endpoint()
        answer = self._token_answer(endpoint, refresh_token)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise self._fail("the issuer's token answer has no id_token (was the scope "
                             '"openid" asked for at login, and does the issuer return an '
                             "id_token on refresh?); nothing was stored")
        new_refresh = answer.get("refresh_token")
        changes = {"id-token": id_token}
        if isinstance(new_refresh, str) and new_refresh and new_refresh != refresh_token:
            changes["refresh-token"] = new_refresh
        kubeconfig_store.store(self._origin, self._user_name, changes)
        self._config.update(changes)
        return id_token

    def _ssl_context(self) -> ssl.SSLContext:
        ca_pem = self._ca_pem
        path = self._config.get("idp-certificate-authority")
        if ca_pem is None and path:
            try:
                with open(path, "rb") as handle:
                    ca_pem = handle.read(1 << 20)
            except OSError as exc:
                raise UsageError(f"{self._where}: idp-certificate-authority: cannot read "
                                 f"{path}: {exc.strerror or exc}") from None
        if ca_pem is None:
            return ssl.create_default_context()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=ca_pem.decode("ascii"))
        except (ssl.SSLError, ValueError):
            raise UsageError(f"{self._where}: idp-certificate-authority: not a PEM "
                             "certificate") from None
        return context

    def _exchange(self, url: str, method: str, body: bytes | None,
                  headers: list[tuple[str, str]], limit: int) -> tuple[int, bytes]:
        """(status, body) of one request to the issuer."""
        import http.client

        from kubectl_keepalive.kube.client import httppool, proxies

        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._fail(f"{safe(url)} is not an http(s) URL")
        try:
            origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
            proxy = proxies.choose(origin, None, self._env)
            pool = httppool.HttpPool(origin, self._ssl_context(), None,
                                     proxy.url if proxy else None, 1)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                status, data = pool.request(method, target, headers, body, ISSUER_TIMEOUT,
                                            limit=limit)
            finally:
                pool.close()
        except (httppool.AnswerTooLarge, httppool.Redirected) as exc:
            raise self._fail(f"the issuer at {safe(origin)} answered {safe(str(exc))}") \
                from None
        except ssl.SSLError as exc:
            raise self._fail(f"TLS with the issuer at {safe(origin)} failed (is "
                             "idp-certificate-authority its CA?): "
                             f"{safe(str(exc) or type(exc).__name__)}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._fail(f"the issuer at {safe(origin)} did not answer: "
                             f"{safe(str(exc) or type(exc).__name__)}") from None
        return status, data

    def _token_endpoint(self) -> str:
        issuer = self._config["idp-issuer-url"]
        # strings.TrimSuffix, as client-go: one trailing slash, not all of them.
        url = (issuer[:-1] if issuer.endswith("/") else issuer) \
            + "/.well-known/openid-configuration"
        status, data = self._exchange(url, "GET", None, [], MAX_DISCOVERY)
        if status != 200:
            raise self._fail(f"the issuer's discovery document {safe(url)} answered HTTP "
                             f"{status}")
        try:
            document = json.loads(data, object_pairs_hook=_Pairs,
                                  parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise self._fail(f"the issuer's discovery document {safe(url)} is not JSON") \
                from None
        endpoint = _field(document, "token_endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise self._fail(f"the issuer's discovery document {safe(url)}: token_endpoint "
                             "is not a string")
        if not endpoint:
            raise self._fail(f"the issuer's discovery document {safe(url)} names no "
                             "token_endpoint")
        return endpoint

    def _token_answer(self, endpoint: str, refresh_token: str) -> dict[str, Any]:
        """golang.org/x/oauth2's refresh: client credentials as Basic, then as form fields."""
        client_id = self._config["client-id"]
        secret = self._config.get("client-secret") or ""
        form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
        basic = base64.b64encode(f"{_query_escape(client_id)}:{_query_escape(secret)}"
                                 .encode()).decode("ascii")
        try:
            return self._token_request(endpoint, form, [("Authorization", f"Basic {basic}")])
        except ClusterError:
            fields = [("client_id", client_id)] + ([("client_secret", secret)] if secret else [])
            return self._token_request(endpoint, sorted(fields + form), [])

    def _token_request(self, endpoint: str, form: list[tuple[str, str]],
                       headers: list[tuple[str, str]]) -> dict[str, Any]:
        body = urllib.parse.urlencode(sorted(form)).encode("ascii")
        status, data = self._exchange(
            endpoint, "POST", body,
            [*headers, ("Content-Type", "application/x-www-form-urlencoded")],
            MAX_TOKEN_ANSWER)
        answer = _token_fields(data)
        failed = not 200 <= status <= 299
        code = answer.get("error") if answer is not None else None
        if failed or code:
            said = ""
            if answer is not None and isinstance(code, str) and code:
                description = answer.get("error_description")
                said = f": {safe(code, 80)}" + (
                    f" ({safe(description, 200)})" if isinstance(description, str)
                    and description else "")
            raise self._fail(f"the issuer's token endpoint {safe(endpoint)} refused the "
                             f"refresh (HTTP {status}){said}; nothing was stored")
        if answer is None:
            raise self._fail(f"the issuer's token endpoint {safe(endpoint)} answered "
                             "something that is not a token answer; nothing was stored")
        if not answer.get("access_token"):
            raise self._fail(f"the issuer's token endpoint {safe(endpoint)} answered no "
                             "access_token; nothing was stored")
        return answer


def _field(document: Any, name: str) -> Any:
    """A struct field as Go's decoder fills it: the key matched without regard to case, the
    last one winning."""
    found = None
    if isinstance(document, _Pairs):
        for key, value in document:
            if key.lower() == name:
                found = value
    return found


_TOKEN_STRINGS = ("access_token", "token_type", "refresh_token", "error", "error_description",
                  "error_uri")


def _token_fields(data: bytes) -> dict[str, Any] | None:
    """The fields of a token answer as golang.org/x/oauth2 reads them; None when it cannot be
    read. A JSON object is read as JSON; anything else as a form-encoded answer (oauth2 goes by
    Content-Type, which the connection pool does not hand back: only an answer that claims to
    be a form but is a JSON object reads differently)."""
    try:
        document = json.loads(data, object_pairs_hook=_Pairs, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, _Pairs):
        text = data.decode("utf-8", errors="replace")
        if text.lstrip().startswith(("{", "[")) or "=" not in text:
            return None
        values = urllib.parse.parse_qs(text, keep_blank_values=True)
        return {key: items[0] for key, items in values.items()}
    fields: dict[str, Any] = {}
    for name in _TOKEN_STRINGS:
        value = _field(document, name)
        if value is not None and not isinstance(value, str):
            return None
        fields[name] = value
    for key, value in document:
        if key == "id_token":  # an extra field: its exact name, as oauth2's Extra reads it
            fields["id_token"] = value
    return fields


def _query_escape(text: str) -> str:
    """Go's url.QueryEscape, which oauth2 applies to Basic client credentials."""
    return urllib.parse.quote_plus(text, safe="")
