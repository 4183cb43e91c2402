"""A client-go exec credential plugin for the wire tier: it records what it was given, then
answers what its arguments ask for.

Copied next to each shape's kubeconfig with this interpreter in its `#!` line. It appends one
JSON line to the file named by WIRE_EXEC_LOG: its arguments, every WIRE_* variable (the
kubeconfig's `env` entries), the parsed KUBERNETES_EXEC_INFO and whether its standard input
is a terminal. Arguments:
`token=VALUE`, `token-env=NAME` (the token from a variable), `rotate=FIRST,THEN` (FIRST on
the first run, THEN on later ones), `cert=CERT,KEY` (PEM files),
`answer-version=V` (a wrong apiVersion), `fail` (exit 1), `garbage` (not JSON).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    info = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "null")
    seen = {"args": argv,
            "env": {k: v for k, v in sorted(os.environ.items())
                    if k.startswith("WIRE_") and k != "WIRE_EXEC_LOG"},
            "exec_info": info, "stdin_is_terminal": os.isatty(0)}
    log = os.environ.get("WIRE_EXEC_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps(seen, sort_keys=True) + "\n")
    version = (info or {}).get("apiVersion", "client.authentication.k8s.io/v1")
    status: dict[str, str] = {}
    for arg in argv:
        name, _, value = arg.partition("=")
        if name == "fail":
            sys.stderr.write("the identity provider said no\n")
            return 1
        if name == "garbage":
            sys.stdout.write("this is not JSON\n")
            return 0
        if name == "token":
            status["token"] = value
        elif name == "rotate":  # the first token on the first run, the second after
            counter = Path(f"{log}.runs") if log else None
            runs = int(counter.read_text()) if counter and counter.exists() else 0
            if counter:
                counter.write_text(str(runs + 1))
            status["token"] = value.split(",")[min(runs, 1)]
        elif name == "token-env":
            status["token"] = os.environ.get(value, "")
        elif name == "cert":
            cert, key = value.split(",")
            status["clientCertificateData"] = Path(cert).read_text()
            status["clientKeyData"] = Path(key).read_text()
        elif name == "answer-version":
            version = value
    answer = {"kind": "ExecCredential", "apiVersion": version, "status": status}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
