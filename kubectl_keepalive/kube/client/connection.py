"""From a resolved kubeconfig to what a request needs: server URL, TLS material, headers.

Reads the files a kubeconfig names (CA, client certificate and key) and decodes its base64
`*-data`, so every problem with them is a UsageError naming the file and the field before any
request. Builds the one `ssl.SSLContext` that REST requests and websockets share (client
certificates are loaded into it through short-lived 0600 temporary files, removed at once).
Impersonation becomes headers here so that every request, websockets included, carries them.

As kubectl: an http:// server (or one without a scheme, which is http) gets no credentials at
all, only impersonation; a CA together with insecure-skip-tls-verify is refused on https; a
server URL with user info is refused (Go would send it as Basic credentials, over http too).
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.kube.client import proxies
from kubectl_keepalive.kube.client.credentials import (
    Credentials,
    HeaderValueError,
    check_one_method,
    header_value,
)
from kubectl_keepalive.kube.client.kubeconfig import ResolvedConfig
from kubectl_keepalive.kube.client.proxies import masked_url

EXEC_EXTENSION = "client.authentication.k8s.io/exec"
_IMPERSONATION_KEYS = ("as", "as-groups", "as-uid", "as-user-extra")


@dataclass(frozen=True)
class Connection:
    """Everything needed to talk to one API server as one user."""

    server: str  # scheme://host[:port][/prefix], no trailing slash
    ca_pem: bytes | None
    insecure: bool
    tls_server_name: str | None
    cert_pem: bytes | None  # the kubeconfig's own client certificate
    key_pem: bytes | None
    proxy_url: str | None  # an http:// proxy (proxies.choose), or None for a direct connection
    impersonation: tuple[tuple[str, str], ...]  # header pairs; Impersonate-Group may repeat
    request_timeout: float | None
    credentials: Credentials = field(compare=False)
    context: str = ""
    user_name: str = ""

    @property
    def secure(self) -> bool:
        return self.server.startswith("https://")

    def describe(self) -> str:
        server = masked_url(self.server)
        return f"{server} (context {self.context})" if self.context else server

    def who(self) -> str:
        """The user and context, for a 401's message."""
        user = f'user "{self.user_name}"' if self.user_name else "the anonymous user"
        return f"{user} (context {self.context})" if self.context else user


def _read(path: str, origin: str, where: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"kubeconfig {origin}: {where}: cannot read {path}: "
                         f"{exc.strerror or exc}") from None


def _material(entry: dict[str, Any], key: str, origin: str, where: str) -> bytes | None:
    """`key-data` (base64) wins over the file `key`, as in client-go."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data).encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise UsageError(f"kubeconfig {origin}: {where}.{key}-data: not valid base64") \
                from None
    path = entry.get(key)
    return _read(str(path), origin, f"{where}.{key}") if path else None


def _server(value: str, origin: str, where: str) -> str:
    if not value:
        raise UsageError(f"kubeconfig {origin}: {where}.server: no server is set (pass "
                         "--server or fix the kubeconfig)")
    if "://" not in value:
        # client-go's URL defaulting: a server without a scheme is plain http, so it gets no
        # credentials at all (see build).
        value = f"http://{value}"
    shown = masked_url(value)
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        # Never the parser's words: they may quote a password that holds a '/'.
        raise UsageError(f"kubeconfig {origin}: {where}.server: {shown!r} is not a valid URL "
                         "(is the port a number?)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"kubeconfig {origin}: {where}.server: {shown!r} is not an http(s) URL")
    if "@" in parts.netloc:
        # Go's net/http would send this as Basic credentials, over http too: refused instead.
        raise UsageError(f"kubeconfig {origin}: {where}.server: {shown!r} carries a user name "
                         "in the URL, which kubectl-keepalive never sends: set the user's "
                         "username and password instead")
    if not parts.hostname.isascii():
        # As Go: an internationalized name goes out in IDNA (punycode) form everywhere: DNS,
        # CONNECT, Host, SNI and the NO_PROXY match.
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise UsageError(f"kubeconfig {origin}: {where}.server: {shown!r}: not a valid "
                             "host name") from None
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        value = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return value.rstrip("/")


# RFC 7230 tchar: what a header name may hold unescaped (client-go's legalHeaderByte).
_TOKEN_BYTES = frozenset(b"!#$&'*+-.^_`|~0123456789"
                         b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _extra_key(key: str) -> str:
    """An `as-user-extra` key in a header name: other bytes (and `%`) %-encoded."""
    return "".join(chr(b) if b in _TOKEN_BYTES else f"%{b:02X}" for b in key.encode())


def _impersonation(user: dict[str, Any], origin: str,
                   where: str) -> tuple[tuple[str, str], ...]:
    """Impersonate-* headers, checked and encoded once for every sender."""
    raw: list[tuple[str, str]] = []
    if user.get("as"):
        raw.append(("Impersonate-User", str(user["as"])))
    raw += [("Impersonate-Group", str(g)) for g in user.get("as-groups") or ()]
    if user.get("as-uid"):
        raw.append(("Impersonate-Uid", str(user["as-uid"])))
    for key, values in (user.get("as-user-extra") or {}).items():
        raw += [(f"Impersonate-Extra-{_extra_key(str(key))}", str(v)) for v in values]
    if raw and not user.get("as"):
        raise UsageError(f"kubeconfig {origin}: {where}: impersonating groups, a uid or extra "
                         "fields needs a user to impersonate (as, or --as), as in kubectl")
    try:
        return tuple((name, header_value(name, value)) for name, value in raw)
    except HeaderValueError as exc:
        raise UsageError(f"kubeconfig {origin}: {where}: {exc}") from None


def _cluster_info(cluster: dict[str, Any], server: str, ca_pem: bytes | None) -> dict[str, Any]:
    """ExecCredential spec.cluster, as client-go fills it for provideClusterInfo: `config`
    is always there, null without the exec extension."""
    info: dict[str, Any] = {"server": server, "config": None}
    if cluster.get("tls-server-name"):
        info["tls-server-name"] = cluster["tls-server-name"]
    if cluster.get("insecure-skip-tls-verify"):
        info["insecure-skip-tls-verify"] = True
    if ca_pem:
        info["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    if cluster.get("proxy-url"):
        info["proxy-url"] = cluster["proxy-url"]
    for extension in cluster.get("extensions") or ():
        if isinstance(extension, dict) and extension.get("name") == EXEC_EXTENSION:
            info["config"] = extension.get("extension")
    return info


def build(resolved: ResolvedConfig, env: dict[str, str] | None = None) -> Connection:
    """The connection a resolved kubeconfig describes; UsageError for what is wrong in it."""
    cluster, user = resolved.cluster, resolved.user
    cwhere = f'cluster "{resolved.cluster_name}"'
    uwhere = f'user "{resolved.user_name}"'
    server = _server(str(cluster.get("server") or ""), resolved.cluster_origin, cwhere)
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    check_one_method(user, resolved.user_origin, uwhere)
    if insecure and server.startswith("https://") and (cluster.get("certificate-authority")
                     or cluster.get("certificate-authority-data")):
        raise UsageError(f"kubeconfig {resolved.cluster_origin}: {cwhere}: a certificate "
                         "authority together with insecure-skip-tls-verify is refused, as "
                         "kubectl refuses it (specifying a root certificates file with the "
                         "insecure flag is not allowed)")
    ca_pem = _material(cluster, "certificate-authority", resolved.cluster_origin, cwhere)
    if not server.startswith("https://"):
        # kubectl sends no credentials over plain http, whatever the cluster entry says;
        # impersonation headers still go.
        user = {k: v for k, v in user.items() if k in _IMPERSONATION_KEYS}
    cert = _material(user, "client-certificate", resolved.user_origin, uwhere)
    key = _material(user, "client-key", resolved.user_origin, uwhere)
    if bool(cert) != bool(key):
        raise UsageError(f"kubeconfig {resolved.user_origin}: {uwhere}: a client certificate "
                         "needs both client-certificate and client-key")
    credentials = Credentials(user, resolved.user_name, resolved.user_origin,
                              _cluster_info(cluster, server, ca_pem), env=env)
    proxy = proxies.choose(server, str(cluster.get("proxy-url") or "") or None,
                           os.environ if env is None else env)
    return Connection(
        server=server, ca_pem=ca_pem, insecure=insecure,
        tls_server_name=str(cluster.get("tls-server-name") or "") or None,
        cert_pem=cert, key_pem=key, proxy_url=proxy.url if proxy else None,
        impersonation=_impersonation(user, resolved.user_origin, uwhere),
        request_timeout=resolved.request_timeout,
        credentials=credentials, context=resolved.context, user_name=resolved.user_name)


def ssl_context(connection: Connection, cert_pem: bytes | None = None,
                key_pem: bytes | None = None) -> ssl.SSLContext:
    """TLS as the kubeconfig says: its CA (else the system's), or no verification at all."""
    # The system's CAs only when they are used: loading them costs more than the request.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if connection.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif connection.ca_pem is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:  # only the kubeconfig's CA
        try:
            context.load_verify_locations(cadata=_pem_text(connection.ca_pem))
        except (ssl.SSLError, ValueError) as exc:
            raise UsageError(f"the certificate authority of context {connection.context} is "
                             f"not a PEM certificate: {exc}") from None
    cert_pem, key_pem = (cert_pem, key_pem) if cert_pem else (connection.cert_pem,
                                                              connection.key_pem)
    if cert_pem and key_pem:
        _load_cert_chain(context, cert_pem, key_pem, connection.context)
    return context


def _pem_text(data: bytes) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII PEM text") from None


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes,
                     name: str) -> None:
    # ssl loads certificates only from files: 0600 temporary files, removed once loaded.
    paths: list[str] = []
    try:
        for data in (cert_pem, key_pem):
            handle, path = tempfile.mkstemp(prefix="kubectl-keepalive-", suffix=".pem")
            paths.append(path)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
        context.load_cert_chain(paths[0], paths[1])
    except (ssl.SSLError, ValueError) as exc:
        raise UsageError(f"the client certificate or key of context {name} cannot be "
                         f"used: {exc}") from None
    finally:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
