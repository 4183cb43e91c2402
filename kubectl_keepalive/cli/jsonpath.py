"""kubectl's JSONPath dialect over a JSON document (`status -o jsonpath=...`), in pure Python.

The dialect of client-go's util/jsonpath as kubectl uses it: text outside `{...}` is printed as
is; inside, fields (`.a.b`, `['a']`), `[*]`, `[n]`, `[start:end:step]`, unions `[0,2]`, filters
`[?(@.x=="y")]`, recursive descent `..`, `range` ... `end`, quoted strings and literals. Values
print as kubectl prints them: strings raw, numbers and booleans as Go prints them, lists and
objects as compact JSON; several results of one action are separated by a space. Errors are
`JSONPathError` with kubectl's wording; the tests compare this module with client-go itself
(tests/oracle/kubectl_output).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


class JSONPathError(ValueError):
    """A template that does not parse, or does not apply to the document."""


@dataclass
class Node:
    kind: str  # text, list, field, array, filter, int, float, bool, wildcard, recursive,
    # union, identifier
    value: Any = None
    nodes: list[Node] = field(default_factory=list)


@dataclass
class Slice:
    start: int | None
    end: int | None
    step: int | None
    derived_end: bool = False  # `[n]`: the end is n+1


_DICT_KEY = re.compile(r"^'([^']*)'$")
_SLICE = re.compile(r"^(-?\d*)(:-?\d*)?(:-?\d*)?$")
_FILTER = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$", re.S)


def _terminator(c: str) -> bool:
    return c in ("", " ", "\t", "\r", "\n", ".", ",", "[", "]", "$", "@", "{", "}")


def _alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.root = Node("list")

    def _next(self) -> str:
        if self.pos >= len(self.text):
            self.pos += 1
            return ""
        c = self.text[self.pos]
        self.pos += 1
        return c

    def _backup(self) -> None:
        self.pos -= 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _consume(self) -> str:
        value = self.text[self.start:self.pos]
        self.start = self.pos
        return value

    def parse(self) -> Node:
        self._text(self.root)
        return self.root

    def _text(self, cur: Node) -> None:
        while True:
            at = self.text.find("{", self.pos)
            if at < 0:
                self.pos = len(self.text)
                if self.pos > self.start:
                    cur.nodes.append(Node("text", self._consume()))
                return
            self.pos = at
            if self.pos > self.start:
                cur.nodes.append(Node("text", self._consume()))
            self.pos += 1
            self._consume()
            inner = Node("list")
            cur.nodes.append(inner)
            if self._inside(inner):
                cur = self.root

    def _inside(self, cur: Node) -> bool:
        """One action up to its `}`; True when it closed."""
        while True:
            rest = self.text[self.pos:]
            if rest.startswith("}"):
                self.pos += 1
                self._consume()
                return True
            if rest.startswith("[?("):
                self._filter(cur)
                continue
            if rest.startswith(".."):
                if cur.nodes and cur.nodes[-1].kind == "recursive":
                    raise JSONPathError("invalid multiple recursive descent")
                self.pos += 2
                self._consume()
                cur.nodes.append(Node("recursive"))
                if _alnum(self._peek()):
                    self._field(cur)
                continue
            c = self._next()
            if c == "" or c in "\r\n":
                raise JSONPathError("unclosed action")
            if c in " @$":
                self._consume()
            elif c == "[":
                self._array(cur)
            elif c in "\"'":
                self._quote(cur, c)
            elif c == ".":
                self._field(cur)
            elif c in "+-" or c.isdigit():
                self._backup()
                self._number(cur)
            elif _alnum(c):
                self._backup()
                self._identifier(cur)
            else:
                raise JSONPathError(f"unrecognized character in action: U+{ord(c):04X} "
                                    f"{_go_quote_rune(c)}")

    def _identifier(self, cur: Node) -> None:
        while not _terminator(self._next()):
            pass
        self._backup()
        value = self._consume()
        if value in ("true", "false"):
            cur.nodes.append(Node("bool", value == "true"))
        else:
            cur.nodes.append(Node("identifier", value))

    def _number(self, cur: Node) -> None:
        if self._peek() in "+-" and self._peek():
            self._next()
        while True:
            c = self._next()
            if (c != "." and not c.isdigit()) or c == "":
                self._backup()
                break
        value = self._consume()
        if re.fullmatch(r"[+-]?\d+", value):
            cur.nodes.append(Node("int", int(value)))
            return
        try:
            if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", value):
                raise ValueError(value)
            cur.nodes.append(Node("float", float(value)))
        except ValueError:
            raise JSONPathError(f"cannot parse number {value}") from None

    def _array(self, cur: Node) -> None:
        while True:
            c = self._next()
            if c in ("", "\n"):
                raise JSONPathError("unterminated array")
            if c == "]":
                break
        text = self._consume()[1:-1]
        if text == "*":
            text = ":"
        parts = text.split(",")
        if len(parts) > 1:
            union = [parse_action(f"[{p.strip(' ')}]") for p in parts]
            cur.nodes.append(Node("union", nodes=union))
            return
        key = _DICT_KEY.match(text)
        if key:
            cur.nodes.extend(parse_action(f".{key.group(1)}").nodes)
            return
        found = _SLICE.match(text)
        if not found:
            raise JSONPathError(f"invalid array index {text}")
        first, second, third = found.group(1), found.group(2), found.group(3)
        start = int(first) if first not in ("", "-") else None
        if first == "-":
            raise JSONPathError("array index - is not a number")
        if second is None:
            end, derived = (None, False) if start is None else (start + 1, True)
            if start is None:  # `[]`: as client-go, an end of 1 derived from index 0
                end, derived = 1, True
        else:
            end, derived = (int(second[1:]) if second[1:] not in ("", "-") else None), False
        step = int(third[1:]) if third and third[1:] not in ("", "-") else None
        cur.nodes.append(Node("array", Slice(start, end, step, derived)))

    def _filter(self, cur: Node) -> None:
        self.pos += 3
        self._consume()
        begin = end = False
        pair = ""
        while True:
            c = self._next()
            if c in ("", "\n"):
                raise JSONPathError("unterminated filter")
            if c in "\"'":
                if not begin:
                    begin, pair = True, c
                    continue
                if self.text[self.pos - 2] != "\\" and c == pair:
                    end = True
            elif c == ")" and begin == end:
                break
        if self._next() != "]":
            raise JSONPathError("unclosed array expect ]")
        text = self._consume()[:-2]
        found = _FILTER.match(text)
        if not found:
            cur.nodes.append(Node("filter", ("exists", parse_action(text), Node("list"))))
        else:
            cur.nodes.append(Node("filter", (found.group(2), parse_action(found.group(1)),
                                             parse_action(found.group(3)))))

    def _quote(self, cur: Node, end: str) -> None:
        while True:
            c = self._next()
            if c in ("", "\n"):
                raise JSONPathError("unterminated quoted string")
            if c == end and self.text[self.pos - 2] != "\\":
                break
        value = self._consume()
        try:
            text = _unquote(value)
        except ValueError:
            raise JSONPathError(f"unquote string {value} error invalid syntax") from None
        cur.nodes.append(Node("text", text))

    def _field(self, cur: Node) -> None:
        self._consume()
        while True:
            c = self._next()
            if c == "\\":
                self._next()
            elif _terminator(c):
                self._backup()
                break
        value = self._consume()
        if value == "*":
            cur.nodes.append(Node("wildcard"))
        else:
            cur.nodes.append(Node("field", value.replace("\\", "")))


def _go_quote_rune(c: str) -> str:
    return "'" + c + "'" if c.isprintable() else json.dumps(c)[1:-1]


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"'}


def _unquote(quoted: str) -> str:
    """Go's strconv-style unquoting of "..." or '...' (the escapes client-go accepts)."""
    body = quoted[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError(quoted)
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + size]
            if len(digits) != size or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(quoted)
            out.append(chr(int(digits, 16)))
            i += 2 + size
        else:
            raise ValueError(quoted)
    return "".join(out)


def parse_action(text: str) -> Node:
    """An action's inside (as client-go's parseAction: the text wrapped in `{...}`)."""
    parser = _Parser("{" + text + "}")
    root = parser.parse()
    return root.nodes[0] if root.nodes else Node("list")


def parse(template: str) -> Node:
    return _Parser(template).parse()


# -- evaluation --------------------------------------------------------------------------------


class _Run:
    def __init__(self, allow_missing: bool) -> None:
        self.allow_missing = allow_missing
        self.begin_range = 0
        self.in_range = 0
        self.end_range = 0
        self.last_end: int | None = None

    def find(self, data: Any, nodes: list[Node], offset: int = 0) -> list[list[Any]]:
        """client-go's FindResults: a result list per action; range repeats what follows."""
        cur = [data]
        full: list[list[Any]] = []
        i = 0
        while i < len(nodes):
            results = self.walk(cur, nodes[i])
            if self.end_range > 0 and self.end_range <= self.in_range:
                self.end_range -= 1
                self.last_end = offset + i
                break
            if self.begin_range > 0:
                self.begin_range -= 1
                self.in_range += 1
                rest = nodes[i + 1:]
                for value in (results or [None]):
                    found = self.find(value, rest, offset + i + 1)
                    if results:
                        full.extend(found)
                self.in_range -= 1
                if self.last_end is not None and self.last_end > offset + i:
                    i = self.last_end - offset
                i += 1
                continue
            full.append(results)
            i += 1
        return full

    def walk(self, values: list[Any], node: Node) -> list[Any]:
        kind = node.kind
        if kind == "list":
            for child in node.nodes:
                values = self.walk(values, child)
            return values
        if kind == "text":
            return [node.value]
        if kind in ("int", "float", "bool"):
            return [node.value for _ in values]
        if kind == "field":
            return self.field(values, node.value)
        if kind == "array":
            return self.array(values, node.value)
        if kind == "filter":
            return self.filter(values, *node.value)
        if kind == "wildcard":
            return [v for value in values if value is not None for v in _children(value)]
        if kind == "recursive":
            return self.recursive(values)
        if kind == "union":
            return [v for child in node.nodes for v in self.walk(values, child)]
        if node.value == "range":
            self.begin_range += 1
            return values
        if node.value == "end":
            if self.in_range > 0:
                self.end_range += 1
                return []
            raise JSONPathError("not in range, nothing to end")
        raise JSONPathError(f"unrecognized identifier {node.value}")

    def field(self, values: list[Any], name: str) -> list[Any]:
        if not values:
            return []
        found = [v[name] for v in values if isinstance(v, dict) and name in v]
        if not found and not self.allow_missing:
            raise JSONPathError(f"{name} is not found")
        return found

    def array(self, values: list[Any], params: Slice) -> list[Any]:
        out: list[Any] = []
        for value in values:
            if value is None:
                continue
            if not isinstance(value, list):
                raise JSONPathError(f"{_go_type(value)} is not array or slice")
            length = len(value)
            start = params.start or 0
            if start < 0:
                start += length
            end = length if params.end is None else params.end
            if end < 0 or (end == 0 and params.derived_end):
                end += length
            if end == start:
                return out
            if start >= length or start < 0:
                raise JSONPathError(f"array index out of bounds: index {start}, length {length}")
            if end > length or end < 0:
                raise JSONPathError(f"array index out of bounds: index {end - 1}, "
                                    f"length {length}")
            if start > end:
                raise JSONPathError(f"starting index {start} is greater than ending index {end}")
            step = 1
            if params.step is not None:
                if params.step <= 0:
                    raise JSONPathError("step must be > 0")
                step = params.step
            out.extend(value[start:end:step])
        return out

    def recursive(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for value in values:
            if value is None:
                continue
            children = _children(value)
            if children:
                out.append(value)
                out.extend(self.recursive(children))
        return out

    def filter(self, values: list[Any], operator: str, left: Node, right: Node) -> list[Any]:
        out: list[Any] = []
        for value in values:
            if not isinstance(value, list):
                raise JSONPathError(f"{_go_value(value)} is not array or slice and cannot be "
                                    "filtered")
            for item in value:
                try:
                    lefts = self.walk([item], left)
                except JSONPathError:
                    if operator == "exists":
                        continue
                    raise
                if operator == "exists":
                    if lefts:
                        out.append(item)
                    continue
                if not lefts:
                    continue
                if len(lefts) > 1:
                    raise JSONPathError("can only compare one element at a time")
                rights = self.walk([item], right)
                if not rights:
                    continue
                if len(rights) > 1:
                    raise JSONPathError("can only compare one element at a time")
                if _compare(lefts[0], rights[0], operator):
                    out.append(item)
        return out


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    if isinstance(value, str):  # Go indexes a string by its bytes
        return list(value.encode())
    return []


def _go_type(value: Any) -> str:
    return {dict: "map[string]interface {}", str: "string", bool: "bool", int: "int64",
            float: "float64"}.get(type(value), "interface {}")


def _go_value(value: Any) -> str:
    return "<nil>" if value is None else go_sprint(value)


def _compare(left: Any, right: Any, operator: str) -> bool:
    """text/template's comparisons: the same basic kind, or an error."""
    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, (int, float)):
            return "number" if isinstance(v, int) else "float"
        if isinstance(v, str):
            return "string"
        return "other"

    lk, rk = kind(left), kind(right)
    if operator in ("==", "!="):
        if lk == "other" or rk == "other":
            raise JSONPathError("invalid type for comparison")
        if lk != rk and not {lk, rk} <= {"number", "float"}:
            raise JSONPathError("incompatible types for comparison")
        equal = left == right
        return equal if operator == "==" else not equal
    if lk in ("bool", "other") or rk in ("bool", "other"):
        raise JSONPathError("invalid type for comparison")
    if lk != rk and not {lk, rk} <= {"number", "float"}:
        raise JSONPathError("incompatible types for comparison")
    return bool({"<": left < right, ">": left > right, "<=": left <= right,
                 ">=": left >= right}.get(operator, False)) if operator in (
        "<", ">", "<=", ">=") else _bad_operator(operator)


def _bad_operator(operator: str) -> bool:
    raise JSONPathError(f"unrecognized filter operator {operator}")


# -- printing ----------------------------------------------------------------------------------


def go_float(value: float) -> str:
    """Go's %v of a float64: the shortest repr, exponent form below 1e-4 and from 1e21."""
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    text = repr(value)
    mantissa, _, exp = text.partition("e")
    if exp:
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    if text.endswith(".0"):
        text = text[:-2]
    if abs(value) >= 1e21:
        return go_float(float(f"{value:e}"))
    return text


def go_sprint(value: Any) -> str:
    """fmt.Sprint of a value decoded from JSON (maps print their keys sorted)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_sprint(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def go_json(value: Any) -> str:
    """encoding/json.Marshal: compact, keys sorted, <, > and & escaped as Go escapes them."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return go_json(value)
    if value is None:
        return "null"
    return go_sprint(value)


def compile_template(template: str) -> Node:
    """The parsed template, or the error kubectl gives for it before it asks the server."""
    try:
        return parse(template)
    except JSONPathError as exc:
        raise JSONPathError(f"error parsing jsonpath {template}, {exc}") from None


def execute(template: str, document: Any, allow_missing: bool = True) -> str:
    """The template over the document, printed as `kubectl -o jsonpath=` prints it."""
    root = compile_template(template)
    try:
        results = _Run(allow_missing).find(document, root.nodes)
    except JSONPathError as exc:
        raise JSONPathError(f"error executing jsonpath {json.dumps(template)}: Error executing "
                            f"template: {exc}") from None
    return "".join(" ".join(_text(v) for v in found) for found in results)


def find(template: str, document: Any) -> list[list[Any]]:
    """The results of a parsed template, missing keys allowed (custom columns, --sort-by)."""
    return _Run(True).find(document, parse(template).nodes)
