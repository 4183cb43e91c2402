"""Property: whatever a user feeds `status --from-file`, the dump parser returns listeners or
raises UsageError (exit 2 with the field named), never another exception, and quickly.

Inputs: arbitrary JSON-ish values built from the keys the parser reads (so the generator
reaches deep into its paths), real golden dumps with one subtree swapped for such a value, and
golden dumps cut or with bytes flipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_keepalive.envoy import envoy_dump, sockopts
from kubectl_keepalive.errors import UsageError
from kubectl_keepalive.model import Listener

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
# The listener goldens (expected.json lists listeners); other folders belong to other readers.
DUMPS = sorted(p.parent / json.loads(p.read_text())["input"] for p in GOLDEN.glob("*/expected.json")
               if "listeners" in json.loads(p.read_text()))
TIME_BOUND_S = 2.0  # per example; the biggest golden dump parses in milliseconds

_KEYS = sorted(envoy_dump._NEEDED_ANY | {"@type", "filter_chains", "x", "internal_listener",
                                         "typeUrl", ""})
_TYPES = ["type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
          "type.googleapis.com/envoy.admin.v3.ListenersConfigDump.DynamicListener",
          "type.googleapis.com/envoy.config.listener.v3.Listener", "other"]

scalars = (st.none() | st.booleans() | st.integers()
           | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=8) | st.sampled_from(["1", "9", "6", "-1", "STATE_BOUND", "UDP",
                                                     "AQAAAA==", "%%", "9" * 30, *_TYPES]))
keys = st.sampled_from(_KEYS) | st.text(max_size=6)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


GOLDENS = [json.loads(p.read_text()) for p in DUMPS]
GOLDEN_PATHS = [_paths(doc) for doc in GOLDENS]


def _parse_bounded(raw: bytes | str) -> list[Listener] | None:
    """Listeners, or None for a UsageError; any other exception fails the property."""
    start = time.monotonic()
    try:
        listeners = envoy_dump.parse(raw)
        for lst in listeners:  # the reader every command uses must cope as well
            sockopts.listener_keepalive(lst)
            sockopts.listener_notes(lst)
        return listeners
    except UsageError as error:
        assert str(error) and "\n" not in str(error)
        return None
    finally:
        assert time.monotonic() - start < TIME_BOUND_S


PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_there_are_golden_dumps_to_mutate() -> None:
    assert len(GOLDENS) >= 8


@PROPERTY
@given(json_values)
def test_any_json_value(value: Any) -> None:
    _parse_bounded(json.dumps(value))


@PROPERTY
@given(st.dictionaries(st.sampled_from(["configs", "dynamic_listeners", "static_listeners"]),
                       json_values, min_size=1))
def test_any_value_under_the_top_level_keys(value: dict[str, Any]) -> None:
    _parse_bounded(json.dumps(value))


@PROPERTY
@given(st.data())
def test_golden_dump_with_one_subtree_replaced(data: st.DataObject) -> None:
    which = data.draw(st.integers(0, len(GOLDENS) - 1))
    path = data.draw(st.sampled_from(GOLDEN_PATHS[which]))
    mutated = _replace(GOLDENS[which], path, data.draw(json_values))
    _parse_bounded(json.dumps(mutated).encode())


@PROPERTY
@given(st.data())
def test_golden_dump_bytes_cut_or_flipped(data: st.DataObject) -> None:
    raw = bytearray(DUMPS[data.draw(st.integers(0, len(DUMPS) - 1))].read_bytes())
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 3))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _parse_bounded(bytes(raw))


def test_unmutated_goldens_parse() -> None:
    for raw in DUMPS:
        assert _parse_bounded(raw.read_bytes())
