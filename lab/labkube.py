"""A tiny Kubernetes API client for the lab's helper processes (standard library only).

It reads the kubeconfig once through ``kubectl config view --raw -o json`` (so no YAML parser is
needed), then talks HTTPS with the client certificate. It offers list, watch (with re-list on
expiry), create, patch and delete of raw JSON objects. It is lab plumbing: it must not grow into a
general client, and it shares nothing with the plugin's own code.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """An API request failed with an HTTP status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    context: ssl.SSLContext
    token: str | None


def _materialise(data_b64: str | None, path: str | None, tmpdir: str, name: str) -> str | None:
    if path:
        return path
    if not data_b64:
        return None
    out = os.path.join(tmpdir, name)
    with open(out, "wb") as fh:
        fh.write(base64.b64decode(data_b64))
    return out


def load_endpoint(kubeconfig: str, kubectl: str = "kubectl") -> Endpoint:
    """Resolves the kubeconfig's current context into an HTTPS endpoint."""
    raw = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "config", "view", "--raw", "--minify", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cfg = json.loads(raw)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"] if cfg.get("users") else {}
    url = urllib.parse.urlparse(cluster["server"])
    tmpdir = tempfile.mkdtemp(prefix="labkube-")
    ctx = ssl.create_default_context()
    ca = _materialise(
        cluster.get("certificate-authority-data"),
        cluster.get("certificate-authority"),
        tmpdir,
        "ca",
    )
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca:
        ctx.load_verify_locations(cafile=ca)
    cert = _materialise(
        user.get("client-certificate-data"), user.get("client-certificate"), tmpdir, "cert"
    )
    key = _materialise(user.get("client-key-data"), user.get("client-key"), tmpdir, "key")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return Endpoint(url.hostname or "127.0.0.1", url.port or 443, ctx, user.get("token"))


class Client:
    """Raw JSON requests against one API server."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._ep = endpoint

    def _conn(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self._ep.host, self._ep.port, context=self._ep.context, timeout=timeout
        )

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "keepalive-lab"}
        if self._ep.token:
            headers["Authorization"] = f"Bearer {self._ep.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        conn = self._conn(timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=self._headers(content_type))
            resp = conn.getresponse()
            text = resp.read().decode()
            if resp.status >= 400:
                raise ApiError(resp.status, text)
            return json.loads(text) if text else {}
        finally:
            conn.close()

    def list(self, path: str) -> JSON:
        return self.request("GET", path)

    def create(self, path: str, obj: JSON) -> JSON:
        return self.request("POST", path, obj)

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except ApiError as err:
            if err.status != 404:
                raise

    def watch_events(self, path: str, resource_version: str, timeout_s: int) -> Iterator[JSON]:
        """Yields watch events until the server closes the stream."""
        sep = "&" if "?" in path else "?"
        query = urllib.parse.urlencode(
            {
                "watch": "1",
                "resourceVersion": resource_version,
                "timeoutSeconds": str(timeout_s),
                "allowWatchBookmarks": "true",
            }
        )
        conn = self._conn(timeout_s + 30)
        try:
            conn.request("GET", f"{path}{sep}{query}", headers=self._headers())
            resp = conn.getresponse()
            if resp.status >= 400:
                raise ApiError(resp.status, resp.read().decode())
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def informer(
    client: Client,
    path: str,
    on_sync: Callable[[dict[str, JSON]], None],
    log: Callable[[str], None],
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """List, then watch, calling ``on_sync`` with the full current set after every change.

    Objects are keyed ``namespace/name``. A broken or expired watch is followed by a fresh list,
    so a missed event can delay but never lose a change.
    """
    while not stop():
        try:
            listing = client.list(path)
        except (ApiError, OSError) as err:
            log(f"list {path}: {err}")
            time.sleep(1.0)
            continue
        objects: dict[str, JSON] = {}
        for item in listing.get("items", []):
            meta = item["metadata"]
            objects[f"{meta.get('namespace', '')}/{meta['name']}"] = item
        on_sync(objects)
        rv = listing["metadata"].get("resourceVersion", "")
        try:
            for event in client.watch_events(path, rv, timeout_s=300):
                kind = event.get("type")
                obj = event.get("object", {})
                if kind == "BOOKMARK":
                    continue
                if kind == "ERROR":
                    break  # usually 410 Gone: list again
                meta = obj.get("metadata", {})
                key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
                if kind == "DELETED":
                    objects.pop(key, None)
                else:
                    objects[key] = obj
                on_sync(objects)
                if stop():
                    return
        except (ApiError, OSError, ValueError) as err:
            log(f"watch {path}: {err}")
            time.sleep(0.5)
