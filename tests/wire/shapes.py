"""The kubeconfig shapes the differential tier runs through kubectl and the plugin.

One row per shape; a new shape is a few lines. Placeholders (filled in `differential.fill`):
`{tls}`/`{plain}` the recording server's https and http URLs (`{tls_host}`, `{plain_host}`
without a scheme), `{ca}`/`{ca_data}` its CA, `{other_ca}` an unrelated one, `{alice_*}` a
client certificate (`_crt`, `_key` files, `_data` base64, `_pem` text), `{bob_crt}`/`{bob_key}`
the exec plugin's, `{exec}` the recording exec plugin, `{dir}` the shape's folder.
"""

from __future__ import annotations

from typing import Any

from tests.wire.differential import Shape

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
TLS_CLUSTER = {"server": "{tls}", "certificate-authority": "{ca}"}
USERINFO = ("kubectl sends a server URL's user:password as Basic credentials, over http too, "
            "in place of the user's token; the plugin refuses such a URL")


def kc(cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None,
       **context: Any) -> dict[str, Any]:
    """A kubeconfig with one context `c` -> cluster `k` (the TLS server by default) and user
    `u`."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": TLS_CLUSTER if cluster is None else cluster}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", **context}}],
    }


def ex(*args: str, version: str = V1, **more: Any) -> dict[str, Any]:
    """An exec block running the recording plugin."""
    spec: dict[str, Any] = {"apiVersion": version, "command": "{exec}", "args": list(args)}
    if version == V1:
        spec["interactiveMode"] = "Never"
    spec.update(more)
    return spec


def insecure(server: str = "{tls}") -> dict[str, Any]:
    return {"server": server, "insecure-skip-tls-verify": True}


ALICE_FILES = {"client-certificate": "{alice_crt}", "client-key": "{alice_key}"}
ALICE_DATA = {"client-certificate-data": "{alice_crt_data}",
              "client-key-data": "{alice_key_data}"}
TOKEN_FILE = {"tok": "token-file-secret-B\n"}
TWO = {
    "apiVersion": "v1", "kind": "Config", "current-context": "c",
    "clusters": [{"name": "k", "cluster": TLS_CLUSTER},
                 {"name": "k2", "cluster": {**TLS_CLUSTER, "server": "{tls}/second"}}],
    "users": [{"name": "u", "user": {"token": "secret-one"}},
              {"name": "u2", "user": {"token": "secret-two"}}],
    "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}},
                 {"name": "c2", "context": {"cluster": "k2", "user": "u2"}}],
}


def dup(section: str) -> dict[str, Any]:
    """TWO with the second entry of one section renamed to the first's name."""
    config = {k: (list(v) if isinstance(v, list) else v) for k, v in TWO.items()}
    first, second = config[section]
    config[section] = [first, {**second, "name": first["name"]}]
    return config


SHAPES: list[Shape] = [
    # -- tokens ------------------------------------------------------------------------------
    Shape("token", kc(user={"token": "secret-token-A"})),
    Shape("token-file", kc(user={"tokenFile": "tok"}), files=TOKEN_FILE),
    Shape("token-file-absolute", kc(user={"tokenFile": "{dir}/tok"}), files=TOKEN_FILE),
    Shape("token-and-token-file", kc(user={"token": "secret-token-A", "tokenFile": "tok"}),
          files=TOKEN_FILE),
    Shape("token-file-missing", kc(user={"tokenFile": "nothing-here"})),
    Shape("token-file-empty", kc(user={"tokenFile": "tok"}), files={"tok": "\n"}),
    Shape("token-trailing-newline", kc(user={"token": "secret-token-A\n"})),
    Shape("token-carriage-return", kc(user={"token": "secret\rtoken"})),
    Shape("token-control-char", kc(user={"token": "secret\x01token"})),
    Shape("token-tab", kc(user={"token": "secret\ttoken"})),
    Shape("token-non-ascii", kc(user={"token": "secret-tökén-ß"})),
    Shape("token-flag", kc(user={"token": "secret-token-A"}), flags=("--token", "secret-flag")),
    Shape("token-flag-over-token-file", kc(user={"tokenFile": "tok"}), files=TOKEN_FILE,
          flags=("--token", "secret-flag")),
    Shape("token-flag-over-exec", kc(user={"exec": ex("token=secret-exec")}),
          flags=("--token", "secret-flag")),
    Shape("token-flag-over-basic", kc(user={"username": "jane", "password": "secret-pw"}),
          flags=("--token", "secret-flag")),
    Shape("token-flag-over-cert", kc(user=ALICE_FILES), flags=("--token", "secret-flag")),
    # -- client certificates and server certificates ----------------------------------------
    Shape("cert-files", kc(user=ALICE_FILES)),
    Shape("cert-data", kc(user=ALICE_DATA)),
    Shape("cert-relative-files", kc(user={"client-certificate": "a.crt", "client-key": "a.key"}),
          files={"a.crt": "{alice_crt_pem}", "a.key": "{alice_key_pem}"}),
    Shape("cert-without-key", kc(user={"client-certificate": "{alice_crt}"})),
    Shape("cert-flags", kc(), flags=("--client-certificate", "{alice_crt}",
                                     "--client-key", "{alice_key}")),
    Shape("cert-and-token", kc(user={**ALICE_DATA, "token": "secret-token-A"})),
    Shape("ca-data", kc(cluster={"server": "{tls}", "certificate-authority-data": "{ca_data}"},
                        user={"token": "secret-token-A"})),
    Shape("ca-relative-file", kc(cluster={"server": "{tls}", "certificate-authority": "ca.crt"},
                                 user={"token": "secret-token-A"}),
          files={"ca.crt": "{ca_pem}"}),
    Shape("ca-system-roots", kc(cluster={"server": "{tls}"}, user={"token": "secret-token-A"})),
    Shape("ca-wrong", kc(cluster={"server": "{tls}", "certificate-authority": "{other_ca}"},
                         user={"token": "secret-token-A"})),
    Shape("insecure", kc(cluster=insecure(), user={"token": "secret-token-A"})),
    Shape("ca-and-insecure-in-file",
          kc(cluster={**TLS_CLUSTER, "insecure-skip-tls-verify": True},
             user={"token": "secret-token-A"})),
    Shape("ca-data-and-insecure-in-file",
          kc(cluster={**insecure(), "certificate-authority-data": "{ca_data}"},
             user={"token": "secret-token-A"})),
    Shape("ca-and-insecure-flags", kc(cluster={"server": "{tls}"}, user={"token": "secret-tk"}),
          flags=("--certificate-authority", "{ca}", "--insecure-skip-tls-verify")),
    Shape("insecure-flag-over-file-ca", kc(user={"token": "secret-token-A"}),
          flags=("--insecure-skip-tls-verify",)),
    Shape("ca-flag-over-file-insecure", kc(cluster=insecure(), user={"token": "secret-tk"}),
          flags=("--certificate-authority", "{ca}")),
    Shape("ca-flag-over-wrong-ca", kc(cluster={"server": "{tls}", "certificate-authority":
                                               "{other_ca}"}, user={"token": "secret-tk"}),
          flags=("--certificate-authority", "{ca}")),
    Shape("tls-server-name-in-file", kc(cluster={**TLS_CLUSTER,
                                                 "tls-server-name": "kube.wire.test"},
                                        user={"token": "secret-token-A"})),
    Shape("tls-server-name-wrong", kc(cluster={**TLS_CLUSTER,
                                               "tls-server-name": "other.wire.test"},
                                      user={"token": "secret-token-A"})),
    Shape("tls-server-name-flag", kc(user={"token": "secret-token-A"}),
          flags=("--tls-server-name", "kube.wire.test")),
    Shape("server-by-name", kc(cluster={"server": "https://localhost:{tls_port}",
                                        "certificate-authority": "{ca}"},
                               user={"token": "secret-token-A"})),
    Shape("server-with-prefix", kc(cluster={**TLS_CLUSTER, "server": "{tls}/some/prefix"},
                                   user={"token": "secret-token-A"})),
    Shape("server-trailing-slash", kc(cluster={**TLS_CLUSTER, "server": "{tls}/"},
                                      user={"token": "secret-token-A"})),
    Shape("server-with-userinfo", kc(cluster={**TLS_CLUSTER,
                                              "server": "https://jane:secret-url-pw@{tls_host}"},
                                     user={"token": "secret-token-A"}), differs=USERINFO),
    Shape("server-with-userinfo-only", kc(cluster={**TLS_CLUSTER, "server":
                                                   "https://jane:secret-url-pw@{tls_host}"})),
    Shape("server-with-userinfo-and-cert",
          kc(cluster={**TLS_CLUSTER, "server": "https://jane:secret-url-pw@{tls_host}"},
             user=ALICE_FILES), differs=USERINFO),
    Shape("server-with-userinfo-http", kc(cluster={"server": "http://jane:secret-url-pw@"
                                                             "{plain_host}"}), differs=USERINFO),
    Shape("proxy-url-socks5-password", kc(cluster={**TLS_CLUSTER, "proxy-url":
                                                   "socks5://jane:secret-proxy-pw@127.0.0.1:"
                                                   "{closed}"}, user={"token": "secret-tk"})),
    Shape("proxy-url-https-password", kc(cluster={**TLS_CLUSTER, "proxy-url":
                                                  "https://jane:secret-proxy-pw@127.0.0.1:"
                                                  "{closed}"}, user={"token": "secret-tk"})),
    Shape("proxy-url-http-closed", kc(cluster={**TLS_CLUSTER, "proxy-url":
                                               "http://jane:secret-proxy-pw@127.0.0.1:{closed}"},
                                      user={"token": "secret-tk"})),
    Shape("https-proxy-env-loopback-server", kc(user={"token": "secret-token-A"}),
          env={"HTTPS_PROXY": "https://jane:secret-proxy-pw@127.0.0.1:{closed}"}),
    Shape("disable-compression", kc(cluster={**TLS_CLUSTER, "disable-compression": True},
                                    user={"token": "secret-token-A"})),
    # -- exec credential plugins -------------------------------------------------------------
    Shape("exec-v1", kc(user={"exec": ex("token=secret-exec")})),
    Shape("exec-v1beta1", kc(user={"exec": ex("token=secret-exec", version=V1BETA1)})),
    Shape("exec-v1-without-interactive-mode",
          kc(user={"exec": {"apiVersion": V1, "command": "{exec}",
                            "args": ["token=secret-exec"]}})),
    Shape("exec-v1alpha1", kc(user={"exec": ex("token=secret-exec",
                                               version="client.authentication.k8s.io/v1alpha1",
                                               interactiveMode="Never")})),
    Shape("exec-env-and-args",
          kc(user={"exec": ex("token-env=WIRE_TOKEN", "--flag", "two words",
                              env=[{"name": "WIRE_TOKEN", "value": "secret-from-env"},
                                   {"name": "WIRE_OTHER", "value": "plain"}])})),
    Shape("exec-failing", kc(user={"exec": ex("fail")})),
    Shape("exec-garbage", kc(user={"exec": ex("garbage")})),
    Shape("exec-missing", kc(user={"exec": {**ex(), "command": "wire-no-such-plugin",
                                            "installHint": "install it from the wire shop"}})),
    Shape("exec-relative-command", kc(user={"exec": {**ex("token=secret-exec"),
                                                     "command": "./wire-exec"}})),
    Shape("exec-wrong-answer-version",
          kc(user={"exec": ex("token=secret-exec", f"answer-version={V1BETA1}")})),
    Shape("exec-interactive-always", kc(user={"exec": ex("token=secret-exec",
                                                         interactiveMode="Always")})),
    Shape("exec-interactive-if-available",
          kc(user={"exec": ex("token=secret-exec", interactiveMode="IfAvailable")})),
    Shape("exec-interactive-always-terminal",
          kc(user={"exec": ex("token=secret-exec", interactiveMode="Always")}), tty=True),
    Shape("exec-interactive-if-available-terminal",
          kc(user={"exec": ex("token=secret-exec", interactiveMode="IfAvailable")}), tty=True),
    Shape("exec-interactive-never-terminal", kc(user={"exec": ex("token=secret-exec")}),
          tty=True),
    Shape("exec-v1beta1-terminal", kc(user={"exec": ex("token=secret-exec", version=V1BETA1)}),
          tty=True),
    Shape("exec-client-certificate", kc(user={"exec": ex("cert={bob_crt},{bob_key}")})),
    Shape("exec-provide-cluster-info",
          kc(cluster={"server": "{tls}", "certificate-authority-data": "{ca_data}",
                      "tls-server-name": "kube.wire.test"},
             user={"exec": ex("token=secret-exec", provideClusterInfo=True)})),
    Shape("exec-provide-cluster-info-v1beta1-ca-file",
          kc(cluster=TLS_CLUSTER,
             user={"exec": ex("token=secret-exec", version=V1BETA1, provideClusterInfo=True)})),
    Shape("exec-provide-cluster-info-extension",
          kc(cluster={**TLS_CLUSTER, "extensions": [
              {"name": "client.authentication.k8s.io/exec",
               "extension": {"audience": "wire", "nested": {"depth": 1}}}]},
             user={"exec": ex("token=secret-exec", provideClusterInfo=True)})),
    Shape("exec-token-trailing-newline", kc(user={"exec": ex("token=secret-exec\n")})),
    # -- basic auth and mixes ----------------------------------------------------------------
    Shape("basic", kc(user={"username": "jane", "password": "secret-pw"})),
    Shape("basic-non-ascii", kc(user={"username": "jäne", "password": "secret-pässwörd"})),
    Shape("basic-username-only", kc(user={"username": "jane"})),
    Shape("cert-and-exec", kc(user={**ALICE_FILES, "exec": ex("token=secret-exec")})),
    Shape("cert-data-and-failing-exec", kc(user={**ALICE_DATA, "exec": ex("fail")})),
    Shape("basic-and-exec", kc(user={"username": "jane", "password": "secret-pw",
                                     "exec": ex("token=secret-exec")})),
    Shape("token-and-basic", kc(user={"token": "secret-token-A", "username": "jane",
                                      "password": "secret-pw"})),
    Shape("token-file-and-basic", kc(user={"tokenFile": "tok", "username": "jane",
                                           "password": "secret-pw"}), files=TOKEN_FILE),
    Shape("token-and-exec", kc(user={"token": "secret-token-A",
                                     "exec": ex("token=secret-exec")})),
    Shape("token-file-and-exec", kc(user={"tokenFile": "tok", "exec": ex("token=secret-ex")}),
          files=TOKEN_FILE),
    # -- impersonation -----------------------------------------------------------------------
    Shape("as", kc(user={"token": "secret-token-A", "as": "jane"})),
    Shape("as-groups", kc(user={"token": "secret-token-A", "as": "jane",
                                "as-groups": ["devs", "ops"]})),
    Shape("as-groups-without-as", kc(user={"token": "secret-token-A", "as-groups": ["devs"]})),
    Shape("as-uid", kc(user={"token": "secret-token-A", "as": "jane", "as-uid": "1234"})),
    Shape("as-user-extra", kc(user={"token": "secret-token-A", "as": "jane", "as-user-extra": {
        "scopes": ["view", "edit"], "reason": ["wire test"]}})),
    Shape("as-uid-without-as", kc(user={"token": "secret-token-A", "as-uid": "1234"})),
    Shape("as-user-extra-odd-key", kc(user={"token": "secret-token-A", "as": "jane",
                                            "as-user-extra": {"why/é %x": ["a b"]}})),
    Shape("as-flags", kc(user={"token": "secret-token-A"}),
          flags=("--as", "jane", "--as-group", "devs", "--as-group", "ops", "--as-uid", "42")),
    Shape("as-flag-over-file", kc(user={"token": "secret-token-A", "as": "jane",
                                        "as-groups": ["devs"]}), flags=("--as", "joe")),
    Shape("as-crlf", kc(user={"token": "secret-token-A", "as": "jane\r\nX-Injected: yes"})),
    Shape("as-folded", kc(user={"token": "secret-token-A", "as": "jane\r\n X-Folded: yes"})),
    Shape("as-group-lf", kc(user={"token": "secret-token-A", "as": "jane",
                                  "as-groups": ["devs\nX-Injected: yes"]})),
    Shape("as-surrounding-spaces", kc(user={"token": " secret-token-A\t", "as": "  jane "})),
    Shape("as-non-ascii", kc(user={"token": "secret-token-A", "as": "jörg-日本"})),
    Shape("as-flag-non-ascii", kc(user={"token": "secret-token-A"}), flags=("--as", "zoë")),
    # -- merges, contexts and names ----------------------------------------------------------
    Shape("kubeconfig-list-first-wins", None,
          env={"KUBECONFIG": "{dir}/a.yaml:{dir}/b.yaml"},
          files={"a.yaml": kc(user={"token": "secret-first"}),
                 "b.yaml": {**kc(user={"token": "secret-second"}), "current-context": "c2"}}),
    Shape("kubeconfig-list-current-context-from-later", None,
          env={"KUBECONFIG": "{dir}/a.yaml:{dir}/b.yaml"},
          files={"a.yaml": {**kc(user={"token": "secret-first"}), "current-context": ""},
                 "b.yaml": {**TWO, "current-context": "c2"}}),
    Shape("kubeconfig-list-missing-file", None,
          env={"KUBECONFIG": "{dir}/none.yaml:{dir}/a.yaml"},
          files={"a.yaml": kc(user={"token": "secret-first"})}),
    Shape("kubeconfig-list-user-from-second-file", None,
          env={"KUBECONFIG": "{dir}/a.yaml:{dir}/sub/b.yaml"},
          files={"a.yaml": {**kc(), "users": []},
                 "sub/b.yaml": {"apiVersion": "v1", "kind": "Config", "users": [
                     {"name": "u", "user": {"tokenFile": "tok"}}]},
                 "sub/tok": "token-file-secret-in-sub\n"}),
    Shape("kubeconfig-list-exec-relative-to-second-file", None,
          env={"KUBECONFIG": "{dir}/a.yaml:{dir}/sub/b.yaml"},
          files={"a.yaml": {**kc(), "users": []},
                 "sub/b.yaml": {"apiVersion": "v1", "kind": "Config", "users": [
                     {"name": "u", "user": {"exec": {**ex("token=secret-exec"),
                                                     "command": "../wire-exec"}}}]}}),
    Shape("kubeconfig-list-empty-entries", None, env={"KUBECONFIG": "::{dir}/a.yaml:"},
          files={"a.yaml": kc(user={"token": "secret-first"})}),
    Shape("kubeconfig-flag-over-env", kc(user={"token": "secret-flag-file"}),
          env={"KUBECONFIG": "{dir}/a.yaml"}, files={"a.yaml": kc(user={"token": "secret-env"})}),
    Shape("kubeconfig-flag-missing-file", None, flags=("--kubeconfig", "{dir}/nothing.yaml")),
    Shape("no-current-context", {**kc(user={"token": "secret-token-A"}), "current-context": ""}),
    Shape("context-and-cluster-flags", TWO, flags=("--context", "c2", "--cluster", "k")),
    Shape("context-flag", TWO, flags=("--context", "c2")),
    Shape("user-flag", TWO, flags=("--user", "u2")),
    Shape("cluster-flag", TWO, flags=("--cluster", "k2")),
    Shape("context-missing", TWO, flags=("--context", "nope")),
    Shape("user-missing", TWO, flags=("--user", "nope")),
    Shape("duplicate-contexts", dup("contexts")),
    Shape("duplicate-clusters", dup("clusters")),
    Shape("duplicate-users", dup("users")),
    Shape("duplicate-users-unused", {**dup("users"), "contexts": [
        {"name": "c", "context": {"cluster": "k", "user": "u2x"}}]}),
    # -- connection flags without or over a kubeconfig ---------------------------------------
    Shape("flags-only", None, flags=("--server", "{tls}", "--certificate-authority", "{ca}",
                                     "--token", "secret-flag")),
    Shape("server-flag-over-file", kc(cluster={"server": "https://127.0.0.2:9"},
                                      user={"token": "secret-token-A"}),
          flags=("--server", "{tls}")),
    Shape("server-flag-clears-tls-server-name",
          kc(cluster={**TLS_CLUSTER, "tls-server-name": "other.wire.test"},
             user={"token": "secret-token-A"}), flags=("--server", "{tls}")),
    Shape("server-flag-http", kc(user={"token": "secret-token-A"}),
          flags=("--server", "{plain}")),
    Shape("server-flag-without-scheme", kc(user={"token": "secret-token-A"}),
          flags=("--server", "{plain_host}")),
    Shape("server-flag-without-ca", kc(cluster={"server": "https://127.0.0.2:9"},
                                       user={"token": "secret-token-A"}),
          flags=("--server", "{tls}")),
    Shape("insecure-flag-equals-true", kc(cluster={"server": "{tls}"},
                                          user={"token": "secret-token-A"}),
          flags=("--insecure-skip-tls-verify=true",)),
    Shape("as-group-flag-without-as", kc(user={"token": "secret-token-A"}),
          flags=("--as-group", "devs")),
    # -- plain http ---------------------------------------------------------------------------
    Shape("http-token", kc(cluster={"server": "{plain}"}, user={"token": "secret-token-A"})),
    Shape("http-token-insecure", kc(cluster=insecure("{plain}"),
                                    user={"token": "secret-token-A"})),
    Shape("http-token-ca", kc(cluster={"server": "{plain}", "certificate-authority": "{ca}"},
                              user={"token": "secret-token-A"})),
    Shape("http-basic-insecure", kc(cluster=insecure("{plain}"),
                                    user={"username": "jane", "password": "secret-pw"})),
    Shape("http-exec", kc(cluster={"server": "{plain}"}, user={"exec": ex("token=secret-ex")})),
    Shape("http-cert", kc(cluster={"server": "{plain}"}, user=ALICE_FILES)),
    Shape("http-impersonation", kc(cluster={"server": "{plain}"},
                                   user={"token": "secret-token-A", "as": "jane"})),
    Shape("http-token-and-basic", kc(cluster={"server": "{plain}"}, user={
        "token": "secret-token-A", "username": "jane", "password": "secret-pw"})),
    Shape("http-ca-and-insecure", kc(cluster={**insecure("{plain}"), "certificate-authority":
                                              "{ca}"}, user={"token": "secret-token-A"})),
    Shape("http-as-crlf", kc(cluster={"server": "{plain}"},
                             user={"as": "jane\nX-Injected: yes"})),
    Shape("http-token-flag", kc(cluster={"server": "{plain}"}),
          flags=("--token", "secret-flag", "--insecure-skip-tls-verify")),
    Shape("server-without-scheme", kc(cluster={"server": "{plain_host}"},
                                      user={"token": "secret-token-A"})),
    Shape("server-without-scheme-insecure", kc(cluster=insecure("{plain_host}"),
                                               user={"token": "secret-token-A"})),
    Shape("server-without-scheme-ca", kc(cluster={"server": "{plain_host}",
                                                  "certificate-authority": "{ca}"},
                                         user={"token": "secret-token-A"})),
]
