"""Store refreshed auth-provider values (OIDC tokens) in the kubeconfig file that defines the
user, the one write to a user's kubeconfig that kubectl makes too.

As client-go's clientcmd: under its lock file `<file>.lock` (created with O_CREAT|O_EXCL,
removed when done), only the user's `auth-provider.config` changes. Unlike clientcmd, which
rewrites the whole file from its own model in place, the file is replaced atomically (a temporary
file in the same folder, fsync, rename; its mode and, where allowed, its owner kept; a symbolic
link's target written, the link kept) and its text is kept: only the changed values' text is
replaced (a missing key becomes one new line in the block mapping), so comments, key order,
quoting and every other entry stay as they were. When the text cannot be edited that way (a
flow mapping, a block scalar), the file is written from its data, which keeps every value but
not the comments. Either way the result is parsed back and compared with what was meant before
it replaces anything.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kubectl_keepalive.errors import ClusterError

LOCK_WAIT = 5.0  # seconds: kubectl holds the lock for the few milliseconds of its own write
LOCK_POLL = 0.05
MAX_FILE_BYTES = 16 << 20  # as kubeconfig.MAX_KUBECONFIG_BYTES: a kubeconfig is kilobytes


def lock_name(path: str) -> str:
    return f"{path}.lock"


@contextlib.contextmanager
def locked(path: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold client-go's lock on the kubeconfig `path` (its `.lock` beside it, as named in the
    KUBECONFIG list), waiting up to `wait` seconds for another writer to finish."""
    name = lock_name(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"cannot lock kubeconfig {path}: {name} exists; another kubectl may be "
                    f"writing the file (if none is, remove {name})") from None
            time.sleep(LOCK_POLL)
        except OSError as exc:
            raise ClusterError(f"cannot lock kubeconfig {path}: cannot create {name}: "
                               f"{exc.strerror or exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def check_writable(path: str) -> None:
    """ClusterError unless `path` may be written: a read-only kubeconfig is the user's choice,
    which replacing it by rename would go around (kubectl, writing in place, fails there)."""
    if not os.access(os.path.realpath(path), os.W_OK):
        raise ClusterError(f"kubeconfig {path} is not writable, so refreshed OIDC tokens "
                           "could not be stored; nothing was refreshed")


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ClusterError(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ClusterError(f"kubeconfig {path}: larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ClusterError(f"kubeconfig {path}: not UTF-8 text") from None


def _load(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=yaml.SafeLoader)


def _provider(data: Any, user_name: str) -> dict[str, Any] | None:
    """The first user named `user_name`'s auth-provider.config mapping in a file's data."""
    users = data.get("users") if isinstance(data, dict) else None
    for item in users if isinstance(users, list) else ():
        if isinstance(item, dict) and item.get("name") == user_name:
            user = item.get("user")
            provider = user.get("auth-provider") if isinstance(user, dict) else None
            config = provider.get("config") if isinstance(provider, dict) else None
            return config if isinstance(config, dict) else None
    return None


def provider_config(path: str, user_name: str) -> dict[str, Any] | None:
    """The user's auth-provider config as the file holds it now (None: no longer there)."""
    import yaml

    try:
        found = _provider(_load(_read_text(path)), user_name)
    except (yaml.YAMLError, RecursionError):
        return None
    return dict(found) if found is not None else None


def store(path: str, user_name: str, values: Mapping[str, str]) -> bool:
    """Set `values` in the user's auth-provider config in `path`; False when the file no
    longer has that user with an auth-provider config (nothing is written then, as in
    client-go). The caller holds the lock."""
    import yaml

    check_writable(path)
    target = os.path.realpath(path)
    text = _read_text(target)
    try:
        data = _load(text)
    except (yaml.YAMLError, RecursionError):
        raise ClusterError(f"kubeconfig {path}: no longer valid YAML; the refreshed tokens "
                           "were not stored") from None
    wanted = copy.deepcopy(data)
    config = _provider(wanted, user_name)
    if config is None:
        return False
    config.update(values)
    new_text = _edited(text, user_name, values)
    if new_text is None or not _reads_as(new_text, wanted):
        new_text = yaml.safe_dump(wanted, sort_keys=False, default_flow_style=False,
                                  allow_unicode=True, width=1 << 20)
    _replace(target, new_text.encode("utf-8"), path)
    return True


def _reads_as(text: str, wanted: Any) -> bool:
    import yaml

    try:
        return bool(_load(text) == wanted)
    except (yaml.YAMLError, RecursionError):
        return False


# -- editing the text in place --------------------------------------------------------------

def _mapping_get(node: Any, key: str) -> tuple[Any, Any] | None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _config_node(root: Any, user_name: str) -> Any:
    import yaml

    users = _mapping_get(root, "users")
    if users is None or not isinstance(users[1], yaml.SequenceNode):
        return None
    for item in users[1].value:
        name = _mapping_get(item, "name")
        if name is None or name[1].value != user_name:
            continue
        user = _mapping_get(item, "user")
        provider = _mapping_get(user[1], "auth-provider") if user else None
        config = _mapping_get(provider[1], "config") if provider else None
        return config[1] if config else None
    return None


def _edited(text: str, user_name: str, values: Mapping[str, str]) -> str | None:
    """`text` with the values replaced or added in place; None when that cannot be done."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None
    config = _config_node(root, user_name)
    if not isinstance(config, yaml.MappingNode) or config.flow_style or not config.value:
        return None
    newline = "\r\n" if "\r\n" in text else "\n"
    edits: list[tuple[int, int, str]] = []
    added: list[str] = []
    for key, value in values.items():
        found = _mapping_get(config, key)
        if found is None:
            added.append(f"{key}: {scalar(value)}")
            continue
        node = found[1]
        if not isinstance(node, yaml.ScalarNode) or node.style in ("|", ">"):
            return None
        edits.append((node.start_mark.index, node.end_mark.index, scalar(value)))
    if added:
        first_key, last_value = config.value[0][0], config.value[-1][1]
        if not isinstance(last_value, yaml.ScalarNode) or last_value.style in ("|", ">"):
            return None
        indent = " " * first_key.start_mark.column
        # After the last value's line, so that a comment on it stays with it.
        at = text.find("\n", last_value.end_mark.index)
        at = len(text) if at < 0 else at - (1 if text[at - 1:at] == "\r" else 0)
        edits.append((at, at, "".join(f"{newline}{indent}{line}" for line in added)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


_PLAIN = re.compile(r"[A-Za-z0-9_.~+/-][A-Za-z0-9_.~+/=-]*")
_PRINTABLE = re.compile("[\t\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def scalar(value: str) -> str:
    """`value` as a one-line YAML scalar that reads back as that string: plain when it is a
    token-like string YAML would not read as something else, else double-quoted."""
    if _PLAIN.fullmatch(value) and _reads_as(value, value):
        return value
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif _PRINTABLE.fullmatch(char) and char != "\t":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


# -- replacing the file ---------------------------------------------------------------------

def _replace(target: str, data: bytes, shown: str) -> None:
    """Write `data` to a temporary file beside `target`, then rename it over `target`."""
    folder, base = os.path.split(target)
    try:
        before = os.stat(target)
        handle, temporary = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ClusterError(f"cannot store the refreshed tokens in kubeconfig {shown}: "
                           f"{exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), before.st_mode & 0o7777)
            if (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(OSError):  # only root may give a file away
                    os.fchown(out.fileno(), before.st_uid, before.st_gid)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ClusterError(f"cannot store the refreshed tokens in kubeconfig {shown}: "
                           f"{exc.strerror or exc}") from None
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """The rename itself survives a crash only once the folder is on disk."""
    try:
        handle = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # folders some filesystems cannot sync
            raise ClusterError(f"cannot store the refreshed tokens in {folder}: "
                               f"{exc.strerror or exc}") from None
    finally:
        os.close(handle)
