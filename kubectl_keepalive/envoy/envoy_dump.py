"""Turn Envoy listener config into `Listener` records, checking every shape on the way.

Accepts what users have at hand: the admin `/config_dump` (whole, masked or `?resource=`), in
Envoy's snake_case, and `istioctl proxy-config listener POD -o json` (a camelCase list of
listeners). Active, warming, draining and rejected versions are kept apart because "applied",
"pending" and "rejected" are different answers. Reads every field that can carry keepalive:
`socket_options` (int or buf values, stream/datagram type), `tcp_keepalive` (Envoy >= 1.37) and
`additional_addresses[]` with their overrides. Pure: bytes in, records out; any input that is
not a listener config of the right shape is a UsageError naming the field, never another error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import (
    AdditionalAddress,
    Listener,
    ListenerState,
    SocketOption,
    TcpKeepalive,
)

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
        "buf_value",
        "state",
        # Envoy >= 1.37 keepalive and additional addresses (envoy PR #41934).
        "tcp_keepalive",
        "keepalive_time",
        "keepalive_interval",
        "keepalive_probes",
        "additional_addresses",
        # SocketOption.type {stream: {}} / {datagram: {}}; pipe and internal addresses.
        "stream",
        "datagram",
        "pipe",
        "envoy_internal_address",
        # The filter chains down to each network filter's stat prefix: what `inflight` reads
        # from the same parse (the in-flight split per port).
        "filter_chains",
        "default_filter_chain",
        "filters",
        "typed_config",
        "stat_prefix",
    }
)
_LISTENER_TYPES = ("ListenersConfigDump", "DynamicListener", "StaticListener", ".Listener")
# Network filters whose stat prefix names a port's connections and requests in /stats: kept
# as their type and prefix alone (their routes and HTTP filters are most of a dump).
_COUNTED_FILTERS = ("HttpConnectionManager", "TcpProxy")

_STATE_KEYS = (
    ("active_state", ListenerState.ACTIVE),
    ("warming_state", ListenerState.WARMING),
    ("draining_state", ListenerState.DRAINING),
)
_SOCKET_STATES = ("STATE_PREBIND", "STATE_BOUND", "STATE_LISTENING")
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


# istioctl writes protojson camelCase; these are the needed keys in that spelling.
_CAMEL_TO_SNAKE = {_camel(k): k for k in _NEEDED_KEYS if "_" in k}
_CAMEL_KEYS = frozenset(_CAMEL_TO_SNAKE)  # a set: dict_keys.isdisjoint then walks the object
_NEEDED_ANY = _NEEDED_KEYS | _CAMEL_KEYS
_DROPPED: dict[str, Any] = {}  # shared placeholder for pruned objects; never mutated


def _keep_needed(obj: dict[str, Any]) -> dict[str, Any]:
    """json object_hook: drop objects the parser never reads, snake_case the ones it keeps.

    Runs once per JSON object of a possibly huge dump, so the common paths stay cheap.
    """
    kind = obj.get("@type")
    if kind is not None and not (isinstance(kind, str) and kind.endswith(_LISTENER_TYPES)):
        if isinstance(kind, str) and kind.endswith(_COUNTED_FILTERS):
            prefix = obj.get("stat_prefix", obj.get("statPrefix"))
            return {"@type": kind, "stat_prefix": prefix} if isinstance(prefix, str) else _DROPPED
        return _DROPPED
    keys = obj.keys()
    if keys.isdisjoint(_NEEDED_ANY):
        return _DROPPED
    if keys.isdisjoint(_CAMEL_KEYS):
        return obj
    return {_CAMEL_TO_SNAKE.get(key, key): value for key, value in obj.items()}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load(raw: bytes | str) -> Any:
    """Decode JSON with pruning; a bad document is a UsageError (it came from the user)."""
    what = "not a JSON config dump or listener list"
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, object_hook=_keep_needed, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise UsageError(f"{what}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, Infinity/NaN, integers past Python's limit
        raise UsageError(f"{what}: {exc}") from None


def parse(raw: bytes | str) -> list[Listener]:
    """Listeners from a config dump or an istioctl listener list, sorted by port, name, state."""
    return parse_loaded(load(raw), raw)


def parse_loaded(document: Any, raw: bytes | str) -> list[Listener]:
    """`parse` on a document `load` already decoded from `raw` (read once, used twice: the
    same pruned document gives `inflight.listener_prefixes` its stat prefixes)."""
    # A rejected update is listed twice (under its listener and as a nameless entry): keep one.
    listeners = list(dict.fromkeys(_listeners_in(document)))
    if not listeners and not _looks_like_listener_config(document) and not _empty_object(raw):
        raise UsageError(
            "no listener config found: expected an Envoy /config_dump or the JSON output of "
            "`istioctl proxy-config listener POD -o json`"
        )
    return sorted(listeners, key=_sort_key)


def _empty_object(raw: bytes | str) -> bool:
    """`{}`: what admin's `config_dump?resource=dynamic_listeners` answers while the proxy has
    no dynamic listener yet (an egress gateway before any Gateway selects it): none, not junk."""
    return (raw.strip() if isinstance(raw, str) else raw.strip().decode("ascii", "replace")) == "{}"


def listener(body: Mapping[str, Any], path: str = "listener") -> Listener:
    """One Listener message (snake_case or camelCase) as an active, dynamic listener.

    For readers of other documents (doctor's full dump, EnvoyFilter patch values) so that every
    command reads keepalive the same way.
    """
    return _listener(_obj(body, path) or {}, ListenerState.ACTIVE, static=False, path=path)


def socket_options(value: Any, path: str = "socket_options") -> tuple[SocketOption, ...]:
    """A `socket_options` list (snake_case or camelCase items); UsageError on a bad shape."""
    return tuple(_option(_obj(item, f"{path}[{i}]") or {}, f"{path}[{i}]")
                 for i, item in enumerate(_list(value, path)))


def tcp_keepalive(value: Any, path: str = "tcp_keepalive") -> TcpKeepalive | None:
    """A `core.v3.TcpKeepalive` message; None when absent."""
    body = _obj(value, path)
    if body is None:
        return None
    return TcpKeepalive(
        time=_int(_field(body, "keepalive_time"), f"{path}.keepalive_time", _UINT32),
        interval=_int(_field(body, "keepalive_interval"), f"{path}.keepalive_interval", _UINT32),
        probes=_int(_field(body, "keepalive_probes"), f"{path}.keepalive_probes", _UINT32),
    )


# -- walking the document ---------------------------------------------------------------------


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
        for i, item in enumerate(document):
            body = _obj(item, f"[{i}]")
            if body is not None and "name" in body:
                yield _listener(body, ListenerState.ACTIVE, static=False, path=f"[{i}]")
        return
    if not isinstance(document, dict):
        return
    if "configs" in document:
        for i, config in enumerate(_list(document["configs"], "configs")):
            body = _obj(config, f"configs[{i}]")
            if body is not None:
                yield from _listeners_in_config(body, f"configs[{i}].")
        return
    yield from _listeners_in_config(document, "")


def _listeners_in_config(config: dict[str, Any], prefix: str) -> Iterator[Listener]:
    where = f"{prefix}static_listeners"
    for i, static in enumerate(_list(config.get("static_listeners"), where)):
        entry = _obj(static, f"{where}[{i}]")
        body = _obj(entry.get("listener"), f"{where}[{i}].listener") if entry else None
        if body is not None:
            yield _listener(body, ListenerState.ACTIVE, static=True,
                            path=f"{where}[{i}].listener")
    where = f"{prefix}dynamic_listeners"
    for i, dynamic in enumerate(_list(config.get("dynamic_listeners"), where)):
        entry = _obj(dynamic, f"{where}[{i}]")
        if entry is not None:
            yield from _dynamic(entry, f"{where}[{i}]")
    kind = config.get("@type")
    kind = kind if isinstance(kind, str) else ""
    if kind.endswith("DynamicListener"):
        yield from _dynamic(config, prefix.rstrip(".") or "(document)")
    elif kind.endswith("StaticListener"):
        body = _obj(config.get("listener"), f"{prefix}listener")
        if body is not None:
            yield _listener(body, ListenerState.ACTIVE, static=True, path=f"{prefix}listener")


def _dynamic(entry: dict[str, Any], path: str) -> Iterator[Listener]:
    for key, state in _STATE_KEYS:
        version = _obj(entry.get(key), f"{path}.{key}")
        body = _obj(version.get("listener"), f"{path}.{key}.listener") if version else None
        if body is not None:
            yield _listener(body, state, static=False, path=f"{path}.{key}.listener")
    error = _obj(entry.get("error_state"), f"{path}.error_state")
    if error is not None:
        where = f"{path}.error_state"
        body = _obj(error.get("failed_configuration"), f"{where}.failed_configuration") or {}
        name = (_str(body.get("name"), f"{where}.failed_configuration.name")
                or _str(entry.get("name"), f"{path}.name") or "")
        details = _str(error.get("details"), f"{where}.details") or "rejected without details"
        yield _listener({**body, "name": name}, ListenerState.REJECTED, static=False,
                        path=f"{where}.failed_configuration", error=details)


def _listener(
    body: Mapping[str, Any], state: ListenerState, *, static: bool, path: str,
    error: str | None = None,
) -> Listener:
    _host, port, protocol = _address(_field(body, "address"), f"{path}.address")
    if protocol == "-" and _field(body, "internal_listener") is not None:
        protocol = "INTERNAL"  # an internal listener has no address at all
    extra = _list(_field(body, "additional_addresses"), f"{path}.additional_addresses")
    return Listener(
        name=_str(_field(body, "name"), f"{path}.name") or "",
        port=port,
        protocol=protocol,
        state=state,
        static=static,
        options=socket_options(_field(body, "socket_options"), f"{path}.socket_options"),
        error=error,
        tcp_keepalive=tcp_keepalive(_field(body, "tcp_keepalive"), f"{path}.tcp_keepalive"),
        additional_addresses=tuple(
            _additional(item, f"{path}.additional_addresses[{i}]") for i, item in enumerate(extra)
        ),
    )


def _address(value: Any, path: str) -> tuple[str, int | None, str]:
    """(host, port, protocol) of a core.v3.Address; protocol "-" when there is none."""
    address = _obj(value, path)
    if address is None:
        return "", None, "-"
    if _field(address, "pipe") is not None:
        _obj(_field(address, "pipe"), f"{path}.pipe")
        return "", None, "PIPE"
    if _field(address, "envoy_internal_address") is not None:
        _obj(_field(address, "envoy_internal_address"), f"{path}.envoy_internal_address")
        return "", None, "INTERNAL"
    socket = _obj(_field(address, "socket_address"), f"{path}.socket_address")
    if socket is None:
        return "", None, "-"
    where = f"{path}.socket_address"
    host = _str(_field(socket, "address"), f"{where}.address") or ""
    port = _int(_field(socket, "port_value"), f"{where}.port_value", (0, 65535))
    protocol = _enum(_field(socket, "protocol"), f"{where}.protocol", ("TCP", "UDP")) or "TCP"
    return host, port, protocol


def _additional(value: Any, path: str) -> AdditionalAddress:
    body = _obj(value, path) or {}
    host, port, _protocol = _address(_field(body, "address"), f"{path}.address")
    override = _obj(_field(body, "socket_options"), f"{path}.socket_options")
    options = None if override is None else socket_options(
        _field(override, "socket_options"), f"{path}.socket_options.socket_options")
    return AdditionalAddress(
        address=host, port=port, options=options,
        tcp_keepalive=tcp_keepalive(_field(body, "tcp_keepalive"), f"{path}.tcp_keepalive"),
    )


def _option(raw: Mapping[str, Any], path: str) -> SocketOption:
    value = _int(_field(raw, "int_value"), f"{path}.int_value", _INT64)
    buf = _field(raw, "buf_value")
    if buf is not None:
        value = _buf_int(buf, f"{path}.buf_value")
    kind = _obj(_field(raw, "type"), f"{path}.type")
    socket_type = None
    if kind is not None and _field(kind, "stream") is not None:
        socket_type = "stream"
    elif kind is not None and _field(kind, "datagram") is not None:
        socket_type = "datagram"
    return SocketOption(
        level=_int(_field(raw, "level"), f"{path}.level", _INT64) or 0,
        name=_int(_field(raw, "name"), f"{path}.name", _INT64) or 0,
        int_value=value,
        state=_enum(_field(raw, "state"), f"{path}.state", _SOCKET_STATES) or "STATE_PREBIND",
        socket_type=socket_type,
    )


def _buf_int(value: Any, path: str) -> int | None:
    """bytes in proto JSON are base64 (standard or URL-safe, padding optional). setsockopt of
    an int option reads a native (little-endian on Envoy's platforms) C int from the buffer;
    fewer than 4 bytes make it fail, so no value."""
    text = _str(value, path) or ""
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{path}: not base64") from None
    return int.from_bytes(data[:4], "little", signed=True) if len(data) >= 4 else None


# -- shape checks -----------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], key: str) -> Any:
    """A field in snake_case or protojson camelCase (EnvoyFilter values are not pruned)."""
    value = obj.get(key)
    if value is None and "_" in key:
        value = obj.get(_camel(key))
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _obj(value: Any, path: str) -> dict[str, Any] | None:
    """An object, or None when absent (JSON null is absent in proto JSON)."""
    if value is None or isinstance(value, dict):
        return value
    raise UsageError(f"{path}: expected an object, got {_kind(value)}")


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise UsageError(f"{path}: expected a list, got {_kind(value)}")


def _str(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise UsageError(f"{path}: expected a string, got {_kind(value)}")


def _int(value: Any, path: str, bounds: tuple[int, int]) -> int | None:
    """Proto JSON integers: numbers, or decimal strings (int64 is written as a string)."""
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit():
            if len(digits) > 20:
                raise UsageError(f"{path}: {text[:24]}... is out of range")
            number = int(text)
    if number is None:
        shown = repr(value) if isinstance(value, float) else _kind(value)
        raise UsageError(f"{path}: expected an integer, got {shown}")
    low, high = bounds
    if not low <= number <= high:
        shown = str(number) if len(str(number)) <= 24 else f"{str(number)[:24]}..."
        raise UsageError(f"{path}: {shown} is out of range ({low}..{high})")
    return number


def _enum(value: Any, path: str, names: tuple[str, ...]) -> str | None:
    """Proto JSON enums: the name, or its number."""
    if value is None:
        return None
    if isinstance(value, str) and value.upper() in names:
        return value.upper()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    shown = repr(value) if isinstance(value, str) and len(value) <= 40 else _kind(value)
    raise UsageError(f"{path}: expected one of {', '.join(names)}, got {shown}")
