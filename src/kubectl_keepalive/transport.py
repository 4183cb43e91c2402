"""HTTP and websocket requests to the API server, with the connection's TLS and headers.

urllib3 for REST and websocket-client for the streaming subresources: both are light to import,
unlike the kubernetes package, whose `__init__` loads its kubeconfig loader (requests, oauthlib,
pydantic) on any import. Every request, websockets included, carries the Authorization and
Impersonate-* headers; a 401 makes exec plugins and token files run again once, as client-go
does. Failures to reach the server become ClusterError; statuses are left to the caller.
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

from kubectl_keepalive.connection import Connection, ssl_context
from kubectl_keepalive.credentials import Auth
from kubectl_keepalive.errors import ClusterError, UnavailableError, UsageError

if TYPE_CHECKING:
    import ssl

    import urllib3

USER_AGENT = "kubectl-keepalive"


class HandshakeError(Exception):
    """A websocket upgrade the server answered with an HTTP status instead of 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"websocket handshake answered {status}")
        self.status = status
        self.body = body


class Transport:
    """One API server and user: a pool of connections and the websocket dialer."""

    def __init__(self, connection: Connection, maxsize: int = 32) -> None:
        self.connection = connection
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._ssl: ssl.SSLContext | None = None
        self._tls_key: tuple[bytes | None, bytes | None] | None = None
        proxy = connection.proxy_url
        if proxy and urllib.parse.urlsplit(proxy).scheme not in ("http", "https"):
            raise UsageError(f"proxy-url {proxy}: only http and https proxies are supported")

    def describe(self) -> str:
        return self.connection.describe()

    # -- TLS and pools, rebuilt when an exec plugin hands out a new client certificate --------

    def _tls(self, auth: Auth) -> tuple[urllib3.PoolManager, ssl.SSLContext | None]:
        import urllib3

        key = (auth.cert_pem, auth.key_pem)
        with self._lock:
            if self._pool is None or self._tls_key != key:
                conn = self.connection
                context = ssl_context(conn, *key) if conn.secure else None
                kwargs: dict[str, Any] = {"maxsize": self._maxsize, "block": False}
                if context is not None:
                    kwargs["ssl_context"] = context
                    if conn.insecure:
                        kwargs.update(cert_reqs="CERT_NONE", assert_hostname=False)
                    elif conn.tls_server_name:
                        kwargs["server_hostname"] = conn.tls_server_name
                if conn.insecure:
                    # kubectl is quiet about an insecure server too; tests run warnings as errors.
                    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                if conn.proxy_url:
                    self._pool = urllib3.ProxyManager(conn.proxy_url, **kwargs)
                else:
                    self._pool = urllib3.PoolManager(**kwargs)
                self._ssl, self._tls_key = context, key
            return self._pool, self._ssl

    def headers(self, auth: Auth) -> list[tuple[str, str]]:
        found = [("User-Agent", USER_AGENT)]
        if auth.authorization:
            found.append(("Authorization", auth.authorization))
        return found + list(self.connection.impersonation)

    def url(self, path: str, query: list[tuple[str, str]] | None = None) -> str:
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"{self.connection.server}{path}{suffix}"

    # -- REST --------------------------------------------------------------------------------

    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                body: bytes | None = None, content_type: str = "application/json",
                ) -> tuple[int, bytes]:
        """One REST request; (status, body). A 401 refreshes plugin credentials once."""
        auth = self.connection.credentials.current()
        status, data = self._request_once(auth, method, path, query, body, content_type)
        if status == 401 and self.connection.credentials.refresh_after_401(auth):
            auth = self.connection.credentials.current()
            status, data = self._request_once(auth, method, path, query, body, content_type)
        return status, data

    def _request_once(self, auth: Auth, method: str, path: str,
                      query: list[tuple[str, str]] | None, body: bytes | None,
                      content_type: str) -> tuple[int, bytes]:
        import urllib3

        pool, _ = self._tls(auth)
        headers = urllib3.HTTPHeaderDict({"Accept": "application/json"})
        for name, value in self.headers(auth):
            headers.add(name, value)
        if body is not None:
            headers["Content-Type"] = content_type
        seconds = self.connection.request_timeout
        timeout = urllib3.Timeout(total=seconds) if seconds else urllib3.Timeout(None, None)
        try:
            response = pool.request(method, self.url(path, query), body=body, headers=headers,
                                    timeout=timeout, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            # No answer (timeout, refused, reset) may pass by itself; a TLS failure will not.
            tls = isinstance(exc, urllib3.exceptions.SSLError)
            kind = ClusterError if tls else UnavailableError
            raise kind(f"cannot reach the API server at {self.describe()}: "
                       f"{_reason(exc)}") from None
        return int(response.status), bytes(response.data)

    # -- websockets --------------------------------------------------------------------------

    def websocket(self, path: str, query: list[tuple[str, str]], protocols: list[str],
                  timeout: float) -> Any:
        """An open websocket to a streaming subresource; HandshakeError on an HTTP status."""
        auth = self.connection.credentials.current()
        try:
            return self._websocket_once(auth, path, query, protocols, timeout)
        except HandshakeError as exc:
            if exc.status != 401 or not self.connection.credentials.refresh_after_401(auth):
                raise
        return self._websocket_once(self.connection.credentials.current(), path, query,
                                    protocols, timeout)

    def _websocket_once(self, auth: Auth, path: str, query: list[tuple[str, str]],
                        protocols: list[str], timeout: float) -> Any:
        import websocket

        _, context = self._tls(auth)
        sslopt: dict[str, Any] = {}
        if context is not None:
            sslopt["context"] = context
            if self.connection.tls_server_name:
                sslopt["server_hostname"] = self.connection.tls_server_name
            if self.connection.insecure:
                sslopt["check_hostname"] = False
        options: dict[str, Any] = {}
        if self.connection.proxy_url:
            proxy = urllib.parse.urlsplit(self.connection.proxy_url)
            options.update(http_proxy_host=proxy.hostname, http_proxy_port=proxy.port,
                           proxy_type="http")
        url = self.url(path, query).replace("https://", "wss://", 1).replace("http://",
                                                                              "ws://", 1)
        ws: Any = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True)
        try:
            ws.connect(url, header=[f"{k}: {v}" for k, v in self.headers(auth)],
                       subprotocols=protocols, timeout=timeout, suppress_origin=True,
                       **options)
        except websocket.WebSocketBadStatusException as exc:
            ws.shutdown()
            raise HandshakeError(int(exc.status_code), bytes(exc.resp_body or b"")) from None
        except BaseException:
            ws.shutdown()
            raise
        return ws


def _reason(exc: BaseException) -> str:
    """urllib3 nests the cause (MaxRetryError -> NewConnectionError -> OSError)."""
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
