"""HTTP and websocket requests to the API server, with the connection's TLS and headers.

http.client (through `httppool`) for REST and `websock` for the streaming subresources, on
sockets that `httppool` opens: light to import, unlike the kubernetes package, whose `__init__`
loads its kubeconfig loader (requests, oauthlib, pydantic) on any import. Every request,
websockets included, carries the Authorization and Impersonate-* headers; a 401 makes exec
plugins and token files run again once, as client-go does. Failures to reach the server become
ClusterError (TLS: asking again will not help) or UnavailableError (no answer: it may pass);
statuses are left to the caller, but for a redirect, which is never followed (client-go follows
one to another host with the token: not copied) and is a ClusterError naming its Location. The
request timeout bounds each request as a whole, websocket upgrades included; every answer has a
size bound (`max_answer`), whose excess is a ClusterError naming it.
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import TYPE_CHECKING

from kubectl_keepalive.errors import ClusterError, UnavailableError
from kubectl_keepalive.kube.client import websock
from kubectl_keepalive.kube.client.connection import Connection, ssl_context
from kubectl_keepalive.kube.client.credentials import Auth
from kubectl_keepalive.kube.client.websock import HandshakeError as HandshakeError  # re-exported
from kubectl_keepalive.terminal import safe

if TYPE_CHECKING:
    import ssl

    from kubectl_keepalive.kube.client.httppool import HttpPool

USER_AGENT = "kubectl-keepalive"
SIZE_FLAG = "--max-answer-size"


class Transport:
    """One API server and user: a pool of connections and the websocket dialer."""

    def __init__(self, connection: Connection, maxsize: int = 32,
                 max_answer: int | None = None) -> None:
        from kubectl_keepalive.kube.client.httppool import MAX_ANSWER

        self.connection = connection
        self.max_answer = MAX_ANSWER if max_answer is None else max_answer
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._pool: HttpPool | None = None
        self._ssl: ssl.SSLContext | None = None
        self._tls_key: tuple[bytes | None, bytes | None] | None = None

    def describe(self) -> str:
        return self.connection.describe()

    # -- TLS and pools, rebuilt when an exec plugin hands out a new client certificate --------

    def _tls(self, auth: Auth) -> tuple[HttpPool, ssl.SSLContext | None]:
        from kubectl_keepalive.kube.client.httppool import HttpPool

        key = (auth.cert_pem, auth.key_pem)
        with self._lock:
            if self._pool is None or self._tls_key != key:
                conn = self.connection
                context = ssl_context(conn, *key) if conn.secure else None
                if self._pool is not None:
                    self._pool.close()
                self._pool = HttpPool(conn.server, context, conn.tls_server_name,
                                      conn.proxy_url, self._maxsize)
                self._ssl, self._tls_key = context, key
            return self._pool, self._ssl

    def headers(self, auth: Auth) -> list[tuple[str, str]]:
        found = [("User-Agent", USER_AGENT)]
        if auth.authorization:
            found.append(("Authorization", auth.authorization))
        return found + list(self.connection.impersonation)

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
        import http.client

        from kubectl_keepalive.kube.client.httppool import AnswerTooLarge, Redirected

        pool, _ = self._tls(auth)
        headers = [("Accept", "application/json"), *self.headers(auth)]
        if body is not None:
            headers.append(("Content-Type", content_type))
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        try:
            return pool.request(method, target, headers, body, self.connection.request_timeout,
                                self.max_answer)
        except Redirected as exc:
            raise ClusterError(
                f"the API server at {self.describe()} answered {method} {path} with a redirect "
                f"({exc.status}) to {safe(exc.location) or '(no Location)'}: redirects are "
                "not followed (the credentials would go wherever it points)") from None
        except AnswerTooLarge as exc:
            raise ClusterError(f"the API server at {self.describe()} answered {method} {path} "
                               f"with {exc} ({SIZE_FLAG} raises the bound)") from None
        except (OSError, http.client.HTTPException) as exc:
            kind = UnavailableError if passing(exc) else ClusterError
            raise kind(f"cannot reach the API server at {self.describe()}: "
                       f"{_reason(exc)}") from None

    # -- websockets --------------------------------------------------------------------------

    def websocket(self, path: str, query: list[tuple[str, str]], protocols: list[str],
                  timeout: float) -> websock.WebSocket:
        """An open websocket to a streaming subresource, upgraded within `timeout` (and the
        request timeout) in all; HandshakeError on an HTTP status."""
        import time

        limit = self.connection.request_timeout
        deadline = time.monotonic() + (timeout if limit is None else min(timeout, limit))
        auth = self.connection.credentials.current()
        try:
            return self._websocket_once(auth, path, query, protocols, deadline)
        except HandshakeError as exc:
            if exc.status != 401 or not self.connection.credentials.refresh_after_401(auth):
                raise
        return self._websocket_once(self.connection.credentials.current(), path, query,
                                    protocols, deadline)

    def _websocket_once(self, auth: Auth, path: str, query: list[tuple[str, str]],
                        protocols: list[str], deadline: float) -> websock.WebSocket:
        """The upgrade on a socket `httppool` opened: TLS and proxy as for REST."""
        pool, _ = self._tls(auth)
        target = pool.server.prefix + path + (f"?{urllib.parse.urlencode(query)}"
                                              if query else "")
        from kubectl_keepalive.kube.client.tunnels import time_left

        sock = pool.open_socket(deadline)
        try:
            return websock.connect(sock, pool.server.host_header, target, self.headers(auth),
                                   protocols, time_left(deadline) or 0.0)
        except BaseException:
            sock.close()
            raise


def passing(exc: BaseException) -> bool:
    """Whether a failure to reach the server may pass by itself (waited out during a rollout):
    no answer, a reset, a TLS session cut before it began (a balancer without a backend, an API
    server restarting), a proxy's 5xx, a SOCKS5 proxy's "unreachable". A certificate or a
    proxy's refusal will not change."""
    import ssl

    from kubectl_keepalive.kube.client.tunnels import (
        ProxyCertificateError,
        ProxyHopError,
        ProxyRefused,
        SocksRefused,
    )

    if isinstance(exc, ProxyHopError):
        return passing(exc.cause)

    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) == "UNEXPECTED_EOF_WHILE_READING"
    if isinstance(exc, ProxyRefused):
        return exc.status >= 500
    if isinstance(exc, SocksRefused):
        return exc.passing
    return not isinstance(exc, ProxyCertificateError)


def _reason(exc: BaseException) -> str:
    """The error's words, or its kind when it has none (a bare timeout)."""
    text = safe(str(exc))
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "timeout":
        return f"timed out{f' ({text})' if text and text != 'timed out' else ''}"
    return text or type(exc).__name__
