"""OIDC auth-provider pieces that need no network: reading a JWT's expiry, refusing the
providers kubectl no longer has, and storing refreshed tokens in a kubeconfig under its lock,
atomically, with the file's text kept. (Against the real kubectl and an issuer: tests/wire.)"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_keepalive.errors import ClusterError, UsageError
from kubectl_keepalive.kube.client import kubeconfig_store, oidc
from kubectl_keepalive.kube.client.oidc import BadIdToken, id_token_expiry, id_token_valid


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: Any) -> str:
    return f"{b64url(b'{}')}.{b64url(json.dumps(claims).encode())}.c2ln"


# -- the expiry ------------------------------------------------------------------------------

JWTISH = st.one_of(
    st.text(max_size=80),
    st.lists(st.text(alphabet="AZaz09-_.=+/ \n", max_size=30), min_size=1, max_size=5)
    .map(".".join),
    st.binary(max_size=60).map(lambda raw: f"h.{b64url(raw)}.s"),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.sampled_from(["exp", "EXP", "Exp", "x"]), inner,
                                   max_size=3), max_leaves=8)
    .map(lambda claims: f"h.{b64url(json.dumps(claims).encode())}.s"),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JWTISH)
def test_any_token_gives_a_time_or_a_message_without_it(token: str) -> None:
    try:
        expiry = id_token_expiry(token)
    except BadIdToken as exc:
        message = str(exc)
        assert "\n" not in message
        if len(token) >= 8:
            assert token not in message
    else:
        assert isinstance(expiry, int)
        assert oidc.LONG_AGO <= expiry <= oidc.LATEST_GO_UNIX


@given(st.integers(min_value=0, max_value=4_000_000_000), st.integers(-100, 100))
def test_valid_while_ten_seconds_remain(now: int, left: int) -> None:
    """client-go's expiryDelta: expired once `exp` is 10 s away or nearer."""
    token = jwt({"exp": now + left, "sub": "alice"})
    assert id_token_valid(token, float(now)) is (left > oidc.EXPIRY_DELTA)


def test_claims_without_exp_are_expired_not_an_error() -> None:
    assert id_token_expiry(jwt({"sub": "alice"})) == oidc.LONG_AGO
    assert id_token_expiry(f"h.{b64url(b'null')}.s") == oidc.LONG_AGO


# -- providers --------------------------------------------------------------------------------

def _provider(user: dict[str, Any], tmp_path: Path) -> oidc.OidcProvider:
    return oidc.auth_provider(user, "u", 'user "u"', str(tmp_path / "config"), {})


@pytest.mark.parametrize(("name", "replacement"), [("gcp", "gke-gcloud-auth-plugin"),
                                                   ("azure", "kubelogin")])
def test_removed_providers_name_their_replacement(name: str, replacement: str,
                                                  tmp_path: Path) -> None:
    with pytest.raises(ClusterError) as caught:
        _provider({"auth-provider": {"name": name, "config": {"access-token": "sekret-x"}}},
                  tmp_path)
    assert "removed in 1.26" in str(caught.value) and replacement in str(caught.value)
    assert "sekret-x" not in str(caught.value)


def test_unknown_provider_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match='"keycloak"'):
        _provider({"auth-provider": {"name": "keycloak"}}, tmp_path)


@pytest.mark.parametrize("config", [
    {"client-id": "x"}, {"idp-issuer-url": "https://i"},
    {"client-id": "x", "idp-issuer-url": "https://i", "idp-certificate-authority-data": "!"},
    {"client-id": 5, "idp-issuer-url": "https://i"},
])
def test_bad_oidc_config_is_usage_error(config: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        _provider({"auth-provider": {"name": "oidc", "config": config}}, tmp_path)


def test_exec_and_auth_provider_together_are_refused(tmp_path: Path) -> None:
    user = {"exec": {"command": "x"}, "auth-provider": {"name": "oidc", "config": {
        "client-id": "x", "idp-issuer-url": "https://i"}}}
    with pytest.raises(UsageError, match="exec"):
        _provider(user, tmp_path)


def _oidc_file(path: Path, config: dict[str, str]) -> None:
    path.write_text(yaml.safe_dump({"users": [{"name": "u", "user": {
        "auth-provider": {"name": "oidc", "config": config}}}]}))


def test_valid_token_is_sent_without_asking_anyone(tmp_path: Path) -> None:
    token = jwt({"exp": int(time.time()) + 600})
    config = {"client-id": "x", "idp-issuer-url": "https://127.0.0.1:1", "id-token": token}
    _oidc_file(tmp_path / "config", config)
    got, until = _provider({"auth-provider": {"name": "oidc", "config": config}},
                           tmp_path).bearer()
    assert got == token and until == id_token_expiry(token) - oidc.EXPIRY_DELTA


def test_expired_without_refresh_token_fails_without_the_token(tmp_path: Path) -> None:
    token = jwt({"exp": int(time.time()) - 600})
    config = {"client-id": "x", "idp-issuer-url": "https://127.0.0.1:1", "id-token": token,
              "client-secret": "client-secret-value"}
    with pytest.raises(ClusterError) as caught:
        _provider({"auth-provider": {"name": "oidc", "config": config}}, tmp_path).bearer()
    assert token not in str(caught.value) and "client-secret-value" not in str(caught.value)


def test_tokens_another_process_stored_are_used_not_refreshed_again(tmp_path: Path) -> None:
    """Expired in memory, but a valid id-token is in the file by now: no refresh (the issuer
    here does not exist, so asking it would fail)."""
    old = jwt({"exp": int(time.time()) - 600})
    new = jwt({"exp": int(time.time()) + 600})
    config = {"client-id": "x", "idp-issuer-url": "https://127.0.0.1:1", "id-token": old,
              "refresh-token": "refresh-token-value"}
    provider = _provider({"auth-provider": {"name": "oidc", "config": dict(config)}}, tmp_path)
    _oidc_file(tmp_path / "config", {**config, "id-token": new})
    assert provider.bearer()[0] == new
    assert provider.refreshes == 0
    assert not (tmp_path / "config.lock").exists()


def test_unreachable_issuer_fails_without_secrets(tmp_path: Path) -> None:
    config = {"client-id": "x", "idp-issuer-url": "https://127.0.0.1:1",
              "id-token": jwt({"exp": 1}), "refresh-token": "refresh-token-value",
              "client-secret": "client-secret-value"}
    _oidc_file(tmp_path / "config", config)
    before = (tmp_path / "config").read_bytes()
    with pytest.raises(ClusterError) as caught:
        _provider({"auth-provider": {"name": "oidc", "config": config}}, tmp_path).bearer()
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "\n" not in message
    assert not any(config[k] in message for k in ("id-token", "refresh-token",
                                                  "client-secret"))
    assert (tmp_path / "config").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


# -- storing tokens ---------------------------------------------------------------------------

KUBECONFIG = """\
# my clusters; keep this comment
apiVersion: v1
users:
- name: other
  user: {token: other-token}   # flow style elsewhere is fine
- name: u
  user:
    auth-provider:
      name: oidc
      config:
        client-id: x   # the client
        id-token: old-id
        refresh-token: 'old-refresh'
contexts: []
"""


def _config(path: Path, user: str = "u") -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    for item in data["users"]:
        if item["name"] == user:
            config: dict[str, Any] = item["user"]["auth-provider"]["config"]
            return config
    raise AssertionError(user)


def test_store_replaces_only_the_values(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    path.chmod(0o640)
    assert kubeconfig_store.store(str(path), "u", {"id-token": "new.id.token",
                                                   "refresh-token": "new: refresh"})
    text = path.read_text()
    assert text == KUBECONFIG.replace("old-id", "new.id.token").replace(
        "'old-refresh'", '"new: refresh"')
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_store_adds_a_missing_key_as_a_line_of_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG.replace("        id-token: old-id\n", ""))
    kubeconfig_store.store(str(path), "u", {"id-token": "added"})
    assert _config(path) == {"client-id": "x", "refresh-token": "old-refresh",
                             "id-token": "added"}
    assert "# the client" in path.read_text() and "# my clusters" in path.read_text()


def test_store_writes_data_when_text_cannot_be_edited(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("users:\n- name: u\n  user:\n    auth-provider: {name: oidc, config: "
                    "{id-token: a, refresh-token: b}}\n")
    kubeconfig_store.store(str(path), "u", {"id-token": "c"})
    assert _config(path) == {"id-token": "c", "refresh-token": "b"}


def test_store_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").write_text(KUBECONFIG)
    (tmp_path / "config").symlink_to(tmp_path / "real")
    kubeconfig_store.store(str(tmp_path / "config"), "u", {"id-token": "via-link"})
    assert (tmp_path / "config").is_symlink()
    assert _config(tmp_path / "real")["id-token"] == "via-link"


def test_store_without_the_user_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    assert not kubeconfig_store.store(str(path), "gone", {"id-token": "x"})
    assert path.read_text() == KUBECONFIG


def test_store_keeps_crlf_lines(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(KUBECONFIG.replace("        id-token: old-id\n", "")
                     .replace("\n", "\r\n").encode())
    kubeconfig_store.store(str(path), "u", {"id-token": "crlf"})
    raw = path.read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert _config(path)["id-token"] == "crlf"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.text(max_size=40), st.text(max_size=40))
def test_any_token_text_reads_back_and_the_rest_is_kept(tmp_path: Path, id_token: str,
                                                        refresh: str) -> None:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    before = yaml.safe_load(KUBECONFIG)
    kubeconfig_store.store(str(path), "u", {"id-token": id_token, "refresh-token": refresh})
    after = yaml.safe_load(path.read_text())
    assert _config(path) == {"client-id": "x", "id-token": id_token, "refresh-token": refresh}
    after["users"][1]["user"]["auth-provider"]["config"] = {}
    before["users"][1]["user"]["auth-provider"]["config"] = {}
    assert after == before


# -- the lock -----------------------------------------------------------------------------------

def test_lock_is_clientgos_file_and_is_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "config")
    with kubeconfig_store.locked(path):
        assert os.path.exists(path + ".lock")
    assert not os.path.exists(path + ".lock")


def test_a_held_lock_is_waited_for(tmp_path: Path) -> None:
    path = str(tmp_path / "config")
    entered = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with kubeconfig_store.locked(path):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(5)
    threading.Timer(0.2, release.set).start()
    with kubeconfig_store.locked(path, wait=5):
        assert release.is_set()
    thread.join(5)


def test_a_lock_never_released_is_an_error_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / "config")
    Path(path + ".lock").write_text("")
    with pytest.raises(ClusterError, match=r"config\.lock"), \
            kubeconfig_store.locked(path, wait=0.1):
        pass
    assert os.path.exists(path + ".lock")  # another writer's lock is left alone


def test_a_read_only_kubeconfig_is_not_replaced(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename would replace a file its owner made read-only; kubectl's write in place
    fails there. (The access check is replaced here: the tests may run as root.)"""
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    path.chmod(0o440)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not (
        str(p) == str(path) and mode & os.W_OK) and real_access(p, mode))
    with pytest.raises(ClusterError, match="not writable"):
        kubeconfig_store.store(str(path), "u", {"id-token": "x"})
    assert path.read_text() == KUBECONFIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_a_read_only_kubeconfig_stops_before_the_refresh(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The issuer is not asked (here it does not exist: asking would be another error), so
    a rotated refresh token is never handed out only to be lost."""
    config = {"client-id": "x", "idp-issuer-url": "https://127.0.0.1:1",
              "id-token": jwt({"exp": 1}), "refresh-token": "refresh-token-value"}
    path = tmp_path / "config"
    _oidc_file(path, config)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not (
        str(p) == str(path) and mode & os.W_OK) and real_access(p, mode))
    provider = _provider({"auth-provider": {"name": "oidc", "config": config}}, tmp_path)
    with pytest.raises(ClusterError, match="not writable"):
        provider.bearer()
    assert provider.refreshes == 0
