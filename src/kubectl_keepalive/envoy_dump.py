"""Turn Envoy listener config into `Listener` records.

Accepts what users have at hand: the admin `/config_dump` (whole, masked or `?resource=`), in
Envoy's snake_case, and `istioctl proxy-config listener POD -o json` (a camelCase list of
listeners). Active, warming, draining and rejected versions are kept apart because "applied",
"pending" and "rejected" are different answers. Pure: bytes in, records out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import Listener, ListenerState, SocketOption

# Keys of the objects the parser reads. While decoding, any object with none of these keys is
# replaced by an empty dict, so a dump's filter chains, routes and clusters never stay in memory.
_NEEDED_KEYS = frozenset(
    {
        "configs",
        "static_listeners",
        "dynamic_listeners",
        "active_state",
        "warming_state",
        "draining_state",
        "error_state",
        "failed_configuration",
        "details",
        "listener",
        "name",
        "address",
        "socket_address",
        "port_value",
        "protocol",
        "socket_options",
        "level",
        "int_value",
        "state",
    }
)
_LISTENER_TYPES = ("ListenersConfigDump", "DynamicListener", "StaticListener", ".Listener")

_STATE_KEYS = (
    ("active_state", ListenerState.ACTIVE),
    ("warming_state", ListenerState.WARMING),
    ("draining_state", ListenerState.DRAINING),
)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


# istioctl writes protojson camelCase; these are the needed keys in that spelling.
_CAMEL_TO_SNAKE = {_camel(k): k for k in _NEEDED_KEYS if "_" in k}
_NEEDED_ANY = _NEEDED_KEYS | _CAMEL_TO_SNAKE.keys()
_DROPPED: dict[str, Any] = {}  # shared placeholder for pruned objects; never mutated


def _keep_needed(obj: dict[str, Any]) -> dict[str, Any]:
    """json object_hook: drop objects the parser never reads, snake_case the ones it keeps.

    Runs once per JSON object of a possibly huge dump, so the common paths stay cheap.
    """
    kind = obj.get("@type")
    if kind is not None and not (isinstance(kind, str) and kind.endswith(_LISTENER_TYPES)):
        return _DROPPED
    keys = obj.keys()
    if keys.isdisjoint(_NEEDED_ANY):
        return _DROPPED
    if keys.isdisjoint(_CAMEL_TO_SNAKE):
        return obj
    return {_CAMEL_TO_SNAKE.get(key, key): value for key, value in obj.items()}


def load(raw: bytes | str) -> Any:
    """Decode JSON with pruning; a bad document is a UsageError (it came from the user)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, object_hook=_keep_needed)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"not a JSON config dump or listener list: {exc}") from None


def parse(raw: bytes | str) -> list[Listener]:
    """Listeners from a config dump or an istioctl listener list, sorted by port, name, state."""
    document = load(raw)
    # A rejected update is listed twice (under its listener and as a nameless entry): keep one.
    listeners = list(dict.fromkeys(_listeners_in(document)))
    if not listeners and not _looks_like_listener_config(document):
        raise UsageError(
            "no listener config found: expected an Envoy /config_dump or the JSON output of "
            "`istioctl proxy-config listener POD -o json`"
        )
    return sorted(listeners, key=_sort_key)


def _sort_key(listener: Listener) -> tuple[int, str, int]:
    order = [ListenerState.ACTIVE, ListenerState.WARMING, ListenerState.DRAINING]
    order.append(ListenerState.REJECTED)
    return (listener.port or 0, listener.name, order.index(listener.state))


def _looks_like_listener_config(document: Any) -> bool:
    """An empty but well-formed document (no listeners yet) is not an error."""
    if isinstance(document, list):
        return True
    if isinstance(document, dict):
        if "static_listeners" in document or "dynamic_listeners" in document:
            return True
        configs = document.get("configs")
        return isinstance(configs, list)
    return False


def _listeners_in(document: Any) -> Iterator[Listener]:
    if isinstance(document, list):  # istioctl: a list of active listeners
        for item in document:
            if isinstance(item, dict) and "name" in item:
                yield _listener(item, ListenerState.ACTIVE, static=False)
        return
    if not isinstance(document, dict):
        return
    if "configs" in document and isinstance(document["configs"], list):
        for config in document["configs"]:
            if isinstance(config, dict):
                yield from _listeners_in_config(config)
        return
    yield from _listeners_in_config(document)


def _listeners_in_config(config: dict[str, Any]) -> Iterator[Listener]:
    for static in config.get("static_listeners") or ():
        if isinstance(static, dict) and isinstance(static.get("listener"), dict):
            yield _listener(static["listener"], ListenerState.ACTIVE, static=True)
    for dynamic in config.get("dynamic_listeners") or ():
        if isinstance(dynamic, dict):
            yield from _dynamic(dynamic)
    kind = str(config.get("@type", ""))
    if kind.endswith("DynamicListener"):
        yield from _dynamic(config)
    elif kind.endswith("StaticListener") and isinstance(config.get("listener"), dict):
        yield _listener(config["listener"], ListenerState.ACTIVE, static=True)


def _dynamic(entry: dict[str, Any]) -> Iterator[Listener]:
    for key, state in _STATE_KEYS:
        version = entry.get(key)
        if isinstance(version, dict) and isinstance(version.get("listener"), dict):
            yield _listener(version["listener"], state, static=False)
    error = entry.get("error_state")
    if isinstance(error, dict):
        failed = error.get("failed_configuration")
        body = failed if isinstance(failed, dict) else {}
        name = body.get("name") or entry.get("name") or ""
        details = str(error.get("details") or "rejected without details")
        yield _listener({**body, "name": name}, ListenerState.REJECTED, static=False, error=details)


def _listener(
    body: dict[str, Any], state: ListenerState, *, static: bool, error: str | None = None
) -> Listener:
    socket_address = (body.get("address") or {}).get("socket_address") or {}
    port = _int(socket_address.get("port_value"))
    protocol = str(socket_address.get("protocol") or "TCP").upper()
    return Listener(
        name=str(body.get("name") or ""),
        port=port,
        protocol=protocol,
        state=state,
        static=static,
        options=tuple(_option(o) for o in body.get("socket_options") or () if isinstance(o, dict)),
        error=error,
    )


def _option(raw: dict[str, Any]) -> SocketOption:
    return SocketOption(
        level=_int(raw.get("level")) or 0,
        name=_int(raw.get("name")) or 0,
        int_value=_int(raw.get("int_value")),
        state=str(raw.get("state") or "STATE_PREBIND"),
    )


def _int(value: Any) -> int | None:
    """int64 fields arrive as JSON strings; absent means the proto default."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
