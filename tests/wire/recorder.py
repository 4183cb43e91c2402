"""A recording fake API server on loopback: one TLS port and one plain-http port.

Per request it records what a client chose to send: scheme, method, path, Authorization, the
Impersonate-* headers, the client certificate's subject and the TLS SNI. Every GET answers an
empty list, which is all `kubectl get --raw` and the plugin's read-only commands need, but for
a bearer token starting `refused-`, answered 401. Two opt-in hooks: `answers` gives fixed
bodies for some paths (`DISCOVERY`: enough for `kubectl get pods`), and `refuse`, a test's
callable, answers 401 to the requests it names (it may change the world first, e.g. rotate a
token file, so the refusal and the change are one step).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.wire.pki import Pki

REFUSED = "refused-"  # a bearer token starting so is answered 401
EMPTY_LIST = json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {},
                         "items": []}).encode()
# Legacy discovery of the core group with pods only: kubectl maps `get pods` from it.
DISCOVERY: Mapping[str, bytes] = {
    "/api": json.dumps({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": []}).encode(),
    "/apis": json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}).encode(),
    "/api/v1": json.dumps({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                           "resources": [{"name": "pods", "singularName": "pod",
                                          "namespaced": True, "kind": "Pod",
                                          "verbs": ["get", "list"]}]}).encode(),
}


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    scheme: str
    method: str
    path: str  # without the query
    authorization: str | None
    impersonation: tuple[tuple[str, str], ...]  # (lower-case name, value), in the order sent
    client_subject: str | None
    sni: str | None

    def credentials(self) -> tuple[Any, ...]:
        """What the client sent about who it is: all but method and path."""
        return (self.scheme, self.authorization, self.impersonation, self.client_subject,
                self.sni)


def _subject(cert: dict[str, Any] | None) -> str | None:
    if not cert:
        return None
    parts = [f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn]
    return ",".join(parts)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the records are the output."""

    def _record(self) -> Seen:
        sock = self.connection
        cert = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        impersonation = tuple((name.lower(), value) for name, value in self.headers.items()
                              if name.lower().startswith("impersonate-"))
        seen = Seen(
            scheme="https" if isinstance(sock, ssl.SSLSocket) else "http",
            method=self.command, path=self.path.partition("?")[0],
            authorization=self.headers.get("Authorization"), impersonation=impersonation,
            client_subject=_subject(cert), sni=getattr(sock, "wire_sni", None))
        self.server.owner.add(seen)
        return seen

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        seen = self._record()
        owner = self.server.owner
        refuse = owner.refuse
        if ((seen.authorization or "").startswith(f"Bearer {REFUSED}")
                or (refuse is not None and refuse(seen))):
            self._answer(401, b'{"kind":"Status","code":401,"message":"Unauthorized"}')
            return
        self._answer(200, owner.answers.get(seen.path, EMPTY_LIST))

    def do_POST(self) -> None:
        self._record()
        self._answer(405, b'{"kind":"Status","message":"read-only recorder"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: RecordingApiServer, context: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:  # the handshake in the request's thread: a client that stalls blocks nobody
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up are part of the tests."""


class RecordingApiServer:
    """Start with `start()`, stop with `stop()`; `take()` returns and clears the records."""

    def __init__(self, pki: Pki, answers: Mapping[str, bytes] | None = None) -> None:
        self.answers = dict(answers or {})  # path -> body of a 200 to GET, in place of a list
        self.refuse: Callable[[Seen], bool] | None = None  # True: answer 401
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server.cert, pki.server.key)
        context.load_verify_locations(cafile=str(pki.ca.cert))
        context.verify_mode = ssl.CERT_OPTIONAL
        context.sni_callback = self._sni
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._tls = _Server(self, context)
        self._plain = _Server(self, None)
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True)
                         for s in (self._tls, self._plain)]

    @staticmethod
    def _sni(sock: Any, name: str | None, context: ssl.SSLContext) -> None:
        sock.wire_sni = name

    @property
    def tls_port(self) -> int:
        return int(self._tls.server_address[1])

    @property
    def plain_port(self) -> int:
        return int(self._plain.server_address[1])

    def start(self) -> RecordingApiServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in (self._tls, self._plain):
            server.shutdown()
            server.server_close()

    def add(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def take(self) -> list[Seen]:
        with self._lock:
            found, self._seen = self._seen, []
        return found


def free_port() -> int:
    """A loopback port nobody listens on (for a server that must not answer)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
