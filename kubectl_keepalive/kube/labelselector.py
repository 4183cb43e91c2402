"""Label selectors with kubectl's full syntax, checked as the API server would. Pure.

Grammar and rules follow apimachinery `pkg/labels/selector.go` (the lexer and parser kubectl
and the API server share) and `pkg/util/validation`: `key`, `!key`, `key=v`, `key==v`,
`key!=v`, `key in (a,b)`, `key notin (a,b)`, `key>N`, `key<N`, joined by commas; keys are
qualified names with an optional DNS-subdomain prefix, values are label values. A selector the
server would refuse is refused here, before any request, with one message naming the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubectl_keepalive.errors import UsageError

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                        re.ASCII)
_INT64_MAX = 2**63 - 1
_SPECIAL = "!=<>,()"
_SPACE = " \t\r\n"  # the server's lexer knows no other whitespace
NAME_MAX = 63
SUBDOMAIN_MAX = 253

_EXACT_OPS = ("=", "==", "!=", ">", "<")
_SET_OPS = ("in", "notin")


@dataclass(frozen=True)
class Requirement:
    """One term: `op` is one of exists, !, =, ==, !=, in, notin, >, <."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in _SET_OPS:
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        op = "=" if self.op == "==" else self.op  # `==` and `=` mean the same
        return f"{self.key}{op}{self.values[0]}"


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a label key (`[prefix/]name`), or None when it is one."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or "/" in prefix):
        return "a key is a name with at most one DNS-subdomain prefix: [prefix/]name"
    if slash and (len(prefix) > SUBDOMAIN_MAX or not _SUBDOMAIN.fullmatch(prefix)):
        return f"prefix {prefix!r} is not a DNS-1123 subdomain (lowercase a-z, 0-9, '-', '.')"
    if not name or len(name) > NAME_MAX or not _NAME.fullmatch(name):
        return (f"name {name!r} must be 1-{NAME_MAX} characters of A-Z, a-z, 0-9, '-', '_', '.',"
                " starting and ending with a letter or digit")
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a label value (empty is allowed), or None when it is one."""
    if value and (len(value) > NAME_MAX or not _NAME.fullmatch(value)):
        return (f"value {value!r} must be at most {NAME_MAX} characters of A-Z, a-z, 0-9, '-',"
                " '_', '.', starting and ending with a letter or digit")
    return None


def _tokens(text: str) -> list[str]:
    """The lexer: operators and parentheses are tokens, whitespace separates, the rest are
    identifiers (`in`/`notin` are told apart by the parser, as the server does)."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in _SPACE:
            i += 1
        elif text.startswith(("!=", "=="), i):
            tokens.append(text[i:i + 2])
            i += 2
        elif char in _SPECIAL:
            tokens.append(char)
            i += 1
        else:
            start = i
            while i < len(text) and text[i] not in _SPACE and text[i] not in _SPECIAL:
                i += 1
            tokens.append(text[start:i])
    return tokens


def _is_identifier(token: str | None) -> bool:
    return (token is not None and token != "" and token not in ("!=", "==")
            and token[0] not in _SPECIAL)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self, why: str) -> UsageError:
        return UsageError(f"invalid label selector {self.text!r}: {why}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def requirements(self) -> list[Requirement]:
        found = [self.requirement()]
        while self.peek() is not None:
            if self.take() != ",":
                raise self.fail(f"expected ',' before {self.tokens[self.pos - 1]!r}")
            found.append(self.requirement())
        return found

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not _is_identifier(key):
            raise self.fail(f"expected a label key, found {key or 'the end'!r}")
        assert key is not None
        problem = qualified_name_problem(key)
        if problem:
            raise self.fail(f"key {key!r}: {problem}")
        if self.peek() in (None, ","):
            return Requirement(key, "!" if negated else "exists")
        if negated:
            raise self.fail(f"'!{key}' takes no operator or value")
        op = self.take()
        if op in _SET_OPS:
            return Requirement(key, str(op), self.value_set(key, str(op)))
        if op not in _EXACT_OPS:
            raise self.fail(f"expected one of =, ==, !=, in, notin, >, < after {key!r}, "
                            f"found {op!r}")
        assert op is not None
        value = "" if self.peek() in (None, ",") else self.take()
        if value and not _is_identifier(value):
            raise self.fail(f"expected a value after '{key}{op}', found {value!r}")
        assert value is not None
        self.check_value(value, op)
        return Requirement(key, op, (value,))

    def value_set(self, key: str, op: str) -> tuple[str, ...]:
        """`(a,b)` read as the server reads it: `()`, `(,a)`, `(a,)` and `(a,,b)` hold an
        empty value too; duplicates collapse."""
        if self.take() != "(":
            raise self.fail(f"'{key} {op}' needs a list of values in parentheses")
        values: dict[str, None] = {}
        if self.peek() == ")":
            self.take()
            values[""] = None
        while not values or self.tokens[self.pos - 1] != ")":
            token = self.take()
            if _is_identifier(token):
                assert token is not None
                values[token] = None
                if self.peek() not in (",", ")"):
                    raise self.fail(f"in the values of '{key} {op}': expected ',' or ')' "
                                    f"after {token!r}")
                if self.peek() == ")":
                    self.take()
            elif token == ",":
                if not values:
                    values[""] = None  # `(,`
                if self.peek() == ")":
                    self.take()
                    values[""] = None  # `,)`
                elif self.peek() == ",":
                    self.take()
                    values[""] = None  # `,,`
            else:
                raise self.fail(f"in the values of '{key} {op}': found {token or 'the end'!r}")
        for value in values:
            self.check_value(value, op)
        return tuple(values)

    def check_value(self, value: str, op: str) -> None:
        problem = label_value_problem(value)
        if problem:
            raise self.fail(problem)
        if op in (">", "<") and not (value.isdigit() and int(value) <= _INT64_MAX):
            raise self.fail(f"'{op}' compares with an integer, not {value!r}")


def parse(text: str) -> list[Requirement]:
    """The requirements of `text`; an empty selector (selects everything) has none."""
    if not text.strip():
        return []
    return _Parser(text).requirements()


def canonical(text: str) -> str:
    """`text` as the server would print it back (`==` becomes `=`); raises UsageError."""
    return ",".join(str(r) for r in parse(text))


def equality_labels(text: str) -> dict[str, str] | None:
    """`a=b,c==d` as {a: b, c: d}; None when any term is not an equality or a key repeats
    with another value (then no single label set describes the selection)."""
    labels: dict[str, str] = {}
    for req in parse(text):
        if req.op not in ("=", "==") or labels.get(req.key, req.values[0]) != req.values[0]:
            return None
        labels[req.key] = req.values[0]
    return labels or None


def matches(text: str, labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy the selector, as the API server decides."""
    for req in parse(text):
        value = labels.get(req.key)
        if req.op == "exists":
            ok = value is not None
        elif req.op == "!":
            ok = value is None
        elif req.op in ("=", "=="):
            ok = value == req.values[0]
        elif req.op == "!=":
            ok = value != req.values[0]
        elif req.op == "in":
            ok = value in req.values
        elif req.op == "notin":
            ok = value not in req.values
        else:  # > and <: integer comparison; a missing or non-integer label never matches
            ok = (value is not None and value.isascii() and value.lstrip("-").isdigit()
                  and (int(value) > int(req.values[0]) if req.op == ">"
                       else int(value) < int(req.values[0])))
        if not ok:
            return False
    return True
