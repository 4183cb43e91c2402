"""kubectl's `-o custom-columns=`, `--sort-by` and `-o name` over `status`'s JSON document.

The items are the document's `gateways`, one row each, as `kubectl get` has one row per object.
Column and sort fields take kubectl's relaxed forms (`name`, `.name`, `{.name}`); values print
as kubectl prints them (several joined by `,`, none as `<none>`), aligned as kubectl's tab
writer aligns them. The tests compare this module with kubectl's own code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubectl_keepalive.cli import jsonpath
from kubectl_keepalive.terminal import escaped

_RELAXED = re.compile(r"^\{\.?([^{}]+)\}$|^\.?([^{}]+)$")
MIN_WIDTH, PADDING = 10, 3  # kubectl's tab writer


def relaxed(expression: str) -> str:
    """`name`, `.name`, `{name}` and `{.name}` all as `{.name}`."""
    if not expression:
        return expression
    found = _RELAXED.match(expression)
    if not found:
        raise jsonpath.JSONPathError(
            "unexpected path string, expected a 'name1.name2' or '.name1.name2' or "
            "'{name1.name2}' or '{.name1.name2}'")
    return "{." + (found.group(1) or found.group(2)) + "}"


def parse_spec(spec: str) -> list[tuple[str, str]]:
    if not spec:
        raise jsonpath.JSONPathError("custom-columns format specified but no custom columns "
                                     "given")
    columns = []
    for part in spec.split(","):
        header, sep, field = part.partition(":")
        if not sep:
            raise jsonpath.JSONPathError(f"unexpected custom-columns spec: {part}, expected "
                                         "<header>:<json-path-expr>")
        columns.append((header, relaxed(field)))
    return columns


def custom_columns(spec: str, items: list[Any], no_headers: bool = False) -> str:
    columns = parse_spec(spec)
    for _, field in columns:
        jsonpath.parse(field)  # a bad expression fails before any row
    rows = [] if no_headers else [[header for header, _ in columns]]
    for item in items:
        row = []
        for _, field in columns:
            found = [v for values in jsonpath.find(field, item) for v in values]
            row.append(",".join(escaped(jsonpath.go_sprint(v)) for v in found) if found
                       else "<none>")
        rows.append(row)
    return tabwrite(rows)


def tabwrite(rows: list[list[str]]) -> str:
    """Go's text/tabwriter as kubectl sets it up: min width 10, padding 3, spaces."""
    if not rows:
        return ""
    widths = [max(MIN_WIDTH, max(len(r[i]) for r in rows) + PADDING)
              for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1] + "\n" for r in rows)


def sort_items(items: list[Any], field: str) -> list[Any]:
    """`--sort-by`: kubectl's order (an item without the field first), the same insertion
    sort Go uses for short lists, so ties keep their order."""
    expression = relaxed(field)
    jsonpath.parse(expression)

    def key(item: Any) -> list[Any]:
        return [v for values in jsonpath.find(expression, item) for v in values][:1]

    keys = [key(item) for item in items]
    if items and not any(keys):
        raise jsonpath.JSONPathError(f"couldn't find any field with path "
                                     f"{json.dumps(expression)} in the list of objects")
    order = list(range(len(items)))

    def less(i: int, j: int) -> bool:
        a, b = keys[i], keys[j]
        if not a:
            return True
        if not b:
            return False
        left, right = a[0], b[0]
        if left is None or right is None:  # a null sorts first, as Go's nil interface
            return left is None and right is not None
        if type(left) is not type(right) or isinstance(left, (dict, list)):
            return False
        return bool(left < right)

    for i in range(1, len(order)):
        j = i
        while j > 0 and less(order[j], order[j - 1]):
            order[j], order[j - 1] = order[j - 1], order[j]
            j -= 1
    return [items[i] for i in order]
