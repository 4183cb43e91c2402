"""A kubeconfig user's credentials, got the way client-go gets them.

Static `token`, `tokenFile` (re-read every minute, as client-go does for projected tokens),
`username`/`password`, and `exec` credential plugins (client.authentication.k8s.io v1 and
v1beta1: `args`, `env`, `interactiveMode`, `provideClusterInfo`, `installHint`; the answer's
token or client certificate is kept until `expirationTimestamp`). A plugin that is missing or
fails is an error naming it: a request is never sent anonymously in its place. An
`auth-provider` is module oidc's: `oidc` works (its refresh asks the issuer and writes the
kubeconfig); gcp, azure and unknown names are refused. Client certificates from the kubeconfig
itself are TLS material and live in `connection`. This module starts processes and makes no
request of its own.

Precedence, measured against kubectl (tests/wire/test_kubectl_parity.py): a tokenFile wins over
`token` and --token; a username/password or a client certificate keeps the exec plugin from
running; a token beside a username/password is refused. Every header value is checked and
encoded here or in `connection` (`header_value`), so REST and websockets send the same bytes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubectl_keepalive.errors import ClusterError, UsageError

if TYPE_CHECKING:
    from kubectl_keepalive.kube.client.oidc import OidcProvider

EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
TOKEN_FILE_REFRESH = 60.0  # client-go's cachingTokenSource re-reads a token file this often
_EXEC_DOCS = ("https://kubernetes.io/docs/reference/access-authn-authz/authentication/"
              "#client-go-credential-plugins")


@dataclass(frozen=True)
class Auth:
    """What goes on a request: an Authorization header and/or a client certificate (PEM)."""

    authorization: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


@dataclass(frozen=True)
class _Cached:
    auth: Auth
    expires: float | None  # time.time() seconds; None: until refused with 401


def _one_line(text: str) -> str:
    return " ".join(text.split())


class HeaderValueError(ValueError):
    """A header value with a control character; the message names the header, never the
    value (it may be a token)."""

    def __init__(self, name: str) -> None:
        super().__init__(f'invalid value for the "{name}" header: it contains a line break '
                         "or another control character")


def header_value(name: str, value: str) -> str:
    """`value` as it goes on the wire, checked as Go's net/http checks it: control characters
    other than a tab are refused (HeaderValueError), spaces and tabs at either end dropped,
    and non-ASCII text sent as UTF-8. The result is a str whose latin-1 encoding is those
    UTF-8 bytes, which is how http.client and `websock` encode header values."""
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        raise HeaderValueError(name)
    value = value.strip(" \t")
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


def check_one_method(user: Mapping[str, Any], origin: str, label: str) -> None:
    """clientcmd's rule, also over plain http where nothing is sent: a token (or token
    file) and a username/password in one user are "more than one authentication method"."""
    if (user.get("token") or user.get("tokenFile")) and (user.get("username")
                                                         or user.get("password")):
        raise UsageError(f"kubeconfig {origin}: {label} has both a token and a "
                         "username/password: kubectl refuses more than one authentication "
                         "method")


class Credentials:
    """The credentials of one kubeconfig user; thread-safe, plugins run at most once at a time.

    `cluster_info` is the ExecCredential's spec.cluster, sent only with provideClusterInfo.
    """

    def __init__(self, user: Mapping[str, Any], user_name: str, origin: str,
                 cluster_info: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None,
                 is_terminal: Callable[[], bool] | None = None) -> None:
        self._user = dict(user)
        self._label = (f"user {json.dumps(user_name, ensure_ascii=False)}" if user_name
                       else "the command line's user")
        self._origin = origin
        self._cluster_info = dict(cluster_info or {})
        self._env = dict(os.environ if env is None else env)
        self._is_terminal = is_terminal or _stdin_is_terminal
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self.runs = 0  # how often the exec plugin ran, for tests and -v
        self._oidc: OidcProvider | None = None
        if self._user.get("auth-provider") is not None:  # checked even where a token wins
            from kubectl_keepalive.kube.client.oidc import auth_provider

            self._oidc = auth_provider(self._user, user_name, self._label, origin, self._env)
        check_one_method(self._user, origin, self._label)
        exec_spec = self._user.get("exec")
        self._exec = dict(exec_spec) if isinstance(exec_spec, Mapping) else None
        if self.uses_exec and self._exec is not None:
            self._check_exec_spec(self._exec)

    @property
    def uses_exec(self) -> bool:
        """Whether the exec plugin runs: as in client-go, only when the user has no token,
        no username/password and no client certificate of its own."""
        user = self._user
        return self._exec is not None and not (
            self._static_token_configured() or self._basic_configured()
            or user.get("client-certificate") or user.get("client-certificate-data"))

    def _static_token_configured(self) -> bool:
        return bool(self._user.get("token") or self._user.get("tokenFile"))

    def _basic_configured(self) -> bool:
        return bool(self._user.get("username") or self._user.get("password"))

    def describe(self) -> str:
        return self._label

    def current(self) -> Auth:
        """The credentials to send now, running the exec plugin when nothing valid is cached."""
        with self._lock:
            cached = self._cached
            if cached is not None and (cached.expires is None or cached.expires > time.time()):
                return cached.auth
            self._cached = self._load()
            return self._cached.auth

    def refresh_after_401(self, used: Auth) -> bool:
        """Forget credentials the server refused; True when new ones may differ (re-try once)."""
        with self._lock:
            if self._cached is None or self._cached.auth != used:
                return self._cached is not None
            self._cached = None
            return self.uses_exec or bool(self._user.get("tokenFile"))

    def _load(self) -> _Cached:
        user = self._user
        token_file = user.get("tokenFile")
        if token_file:  # client-go: a token file wins over `token` (and --token)
            from_file = self._read_token_file(str(token_file))
            return _Cached(Auth(self._bearer(from_file, UsageError)),
                           time.time() + TOKEN_FILE_REFRESH)
        token = user.get("token")
        if token:
            return _Cached(Auth(self._bearer(str(token), UsageError)), None)
        if self._basic_configured():
            pair = f"{user.get('username', '')}:{user.get('password', '')}".encode()
            return _Cached(Auth(f"Basic {base64.b64encode(pair).decode()}"), None)
        if self.uses_exec and self._exec is not None:
            return self._run_exec(self._exec)
        if self._oidc is not None:
            id_token, until = self._oidc.bearer()
            return _Cached(Auth(f"Bearer {id_token}"), until)
        return _Cached(Auth(), None)

    def _bearer(self, token: str, error: type[UsageError] | type[ClusterError]) -> str:
        try:
            return header_value("Authorization", f"Bearer {token}")
        except HeaderValueError as exc:
            where = (f"kubeconfig {self._origin}: {self._label}" if error is UsageError
                     else self._plugin_name(self._exec or {}))
            raise error(f"{where}: {exc}") from None

    def _read_token_file(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"kubeconfig {self._origin}: {self._label}: tokenFile {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        if not token:
            raise UsageError(f"kubeconfig {self._origin}: {self._label}: tokenFile {path} "
                             "is empty")
        return token

    # -- exec plugins ------------------------------------------------------------------------

    def _check_exec_spec(self, spec: dict[str, Any]) -> None:
        where = f"kubeconfig {self._origin}: {self._label}: exec"
        version = spec.get("apiVersion")
        if version not in EXEC_VERSIONS:
            raise UsageError(f"{where}.apiVersion: {version!r} is not one of "
                             f"{', '.join(EXEC_VERSIONS)}")
        mode = spec.get("interactiveMode")
        if not mode and version.endswith("/v1"):
            raise UsageError(f"{where}.interactiveMode: must be set for {version} "
                             f"(one of {', '.join(INTERACTIVE_MODES)})")
        if mode and mode not in INTERACTIVE_MODES:
            raise UsageError(f"{where}.interactiveMode: {mode!r} is not one of "
                             f"{', '.join(INTERACTIVE_MODES)}")

    def _plugin_name(self, spec: Mapping[str, Any]) -> str:
        return f'exec credential plugin "{spec.get("command")}" of {self._label}'

    def _run_exec(self, spec: dict[str, Any]) -> _Cached:
        name = self._plugin_name(spec)
        version = str(spec["apiVersion"])
        mode = str(spec.get("interactiveMode") or "IfAvailable")
        terminal = mode != "Never" and self._is_terminal()
        if mode == "Always" and not terminal:
            raise ClusterError(f"{name} needs a terminal (interactiveMode: Always), but "
                               "standard input is not one")
        exec_spec: dict[str, Any] = {"interactive": terminal}
        if spec.get("provideClusterInfo"):
            exec_spec["cluster"] = self._cluster_info
        env = dict(self._env)
        for item in spec.get("env") or ():
            env[str(item["name"])] = str(item.get("value", ""))
        env["KUBERNETES_EXEC_INFO"] = json.dumps(
            {"apiVersion": version, "kind": "ExecCredential", "spec": exec_spec})
        command = str(spec["command"])
        found = command if os.path.isabs(command) else shutil.which(command, path=env.get("PATH"))
        if not found or not os.path.isfile(found):
            hint = spec.get("installHint")
            raise ClusterError(
                f"{name} not found ({command}): it looks like a client-go credential plugin "
                f"that is not installed; see {_EXEC_DOCS}"
                + (f"; install hint: {_one_line(str(hint))}" if hint else ""))
        self.runs += 1
        try:
            done = subprocess.run(
                [found, *[str(a) for a in spec.get("args") or ()]], env=env,
                stdin=None if terminal else subprocess.DEVNULL, stdout=subprocess.PIPE,
                # A terminal session lets the plugin talk to the user; otherwise keep its
                # stderr for the error message.
                stderr=None if terminal else subprocess.PIPE, check=False)
        except OSError as exc:
            raise ClusterError(f"{name} could not run: {exc.strerror or exc}") from None
        if done.returncode != 0:
            lines = (done.stderr or b"").decode(errors="replace").strip().splitlines()
            last = f": {_one_line(lines[-1])[:300]}" if lines else ""
            raise ClusterError(f"{name} exited with code {done.returncode}{last}")
        return self._parse_exec_output(name, version, done.stdout)

    def _parse_exec_output(self, name: str, version: str, stdout: bytes) -> _Cached:
        try:
            answer = json.loads(stdout)
        except (ValueError, RecursionError):
            raise ClusterError(f"{name} did not print an ExecCredential (not JSON)") from None
        if not isinstance(answer, dict) or answer.get("kind") != "ExecCredential":
            raise ClusterError(f"{name} did not print an ExecCredential")
        if answer.get("apiVersion") != version:
            raise ClusterError(f"{name} answered apiVersion {answer.get('apiVersion')!r}, "
                               f"but the kubeconfig asks for {version}")
        status = answer.get("status")
        if not isinstance(status, dict):
            raise ClusterError(f"{name} answered an ExecCredential without status")
        token = status.get("token")
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if not all(isinstance(v, (str, type(None))) for v in (token, cert, key)):
            raise ClusterError(f"{name} answered an ExecCredential with non-string fields")
        if bool(cert) != bool(key):
            raise ClusterError(f"{name} answered only one of clientCertificateData and "
                               "clientKeyData")
        if not token and not cert:
            raise ClusterError(f"{name} answered neither a token nor a client certificate")
        expires = _timestamp(name, status.get("expirationTimestamp"))
        auth = Auth(self._bearer(token, ClusterError) if token else None,
                    cert.encode() if cert else None, key.encode() if key else None)
        return _Cached(auth, expires)


def _timestamp(name: str, value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(_iso(str(value))).timestamp()
    except ValueError:
        raise ClusterError(f"{name} answered a bad expirationTimestamp {value!r}") from None


# RFC 3339 as Go writes it (`Z`, up to nine fraction digits).
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)")


def _iso(text: str) -> str:
    """RFC 3339 in the form `datetime.fromisoformat` reads on Python 3.9 and 3.10 too, which
    know neither `Z` nor fractions other than 3 or 6 digits; anything else is left as it is."""
    match = _RFC3339.fullmatch(text)
    if not match:
        return text
    day, clock, fraction, zone = match.groups()
    micro = f".{(fraction or '')[:6].ljust(6, '0')}" if fraction else ""
    return f"{day}T{clock}{micro}{'+00:00' if zone in 'Zz' else zone}"


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
