"""The OData `$filter` subset Batch list operations accept, evaluated against wire-format dicts.

Supported: `eq ne gt ge lt le`, `and or not`, parentheses, `startswith(prop, 'x')`, property paths
such as `executionInfo/result`, and string, number, boolean, null and `DateTime'...'` literals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import BatchApiError
from .state import SECRET_PROPERTIES

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dt>[Dd]ate[Tt]ime'[^']*')|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_$][\w/.$]*))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}


def _invalid(text: str, reason: str) -> BatchApiError:
    return BatchApiError(
        400,
        "InvalidQueryParameterValue",
        values=[("QueryParameterName", "$filter"), ("QueryParameterValue", text), ("Reason", reason)],
    )


def _lookup(item: dict[str, Any], path: str) -> Any:
    """A property path in a stored resource; bookkeeping ("_...") and secret properties read as
    null, so a filter sees what the wire would show."""
    value: Any = item
    for part in path.split("/"):
        if part.startswith("_") or part in SECRET_PROPERTIES:
            return None
        value = value.get(part) if isinstance(value, dict) else None
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise _invalid(text, f"cannot read the filter at position {pos}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.pos = 0
        self.nesting = 0  # inside parentheses, not() or startswith(): not a top-level conjunct
        self.top_or = False
        self.conjuncts: list[tuple[str, str, Any]] = []  # top-level `path op value` comparisons

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _invalid(self.text, "the filter ends too early")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise _invalid(self.text, f"expected {value!r}")

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            raise _invalid(self.text, f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return predicate

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while (token := self.peek()) and token[1].lower() == "or":
            self.top_or = self.top_or or self.nesting == 0
            self.take()
            right = self.and_expr()
            left = (lambda a, b: lambda item: a(item) or b(item))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.unary()
        while (token := self.peek()) and token[1].lower() == "and":
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda item: a(item) and b(item))(left, right)
        return left

    def unary(self) -> Predicate:
        token = self.peek()
        if token and token[1].lower() == "not":
            self.take()
            self.nesting += 1
            inner = self.unary()
            self.nesting -= 1
            return lambda item: not inner(item)
        if token and token[1] == "(":
            self.take()
            self.nesting += 1
            inner = self.or_expr()
            self.nesting -= 1
            self.expect(")")
            return inner
        if token and token[1].lower() == "startswith":
            self.take()
            self.expect("(")
            path = self.take()
            self.expect(",")
            prefix = self.literal()
            self.expect(")")
            return lambda item: str(_lookup(item, path[1]) or "").startswith(str(prefix))
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, path = self.take()
        if kind != "word":
            raise _invalid(self.text, f"expected a property name, got {path!r}")
        op = self.take()[1].lower()
        if op not in _COMPARE:
            raise _invalid(self.text, f"unsupported operator {op!r}")
        value = self.literal()
        if self.nesting == 0:
            self.conjuncts.append((path, op, value))
        compare = _COMPARE[op]
        if isinstance(value, str) and path.endswith(("Time", "time")):
            return lambda item: compare(_norm_time(_lookup(item, path)), _norm_time(value))
        return lambda item: compare(_lookup(item, path), value)

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "dt":
            return text[text.index("'") + 1 : -1]
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "word" and text.lower() == "null":
            return None
        raise _invalid(self.text, f"expected a value, got {text!r}")


def _norm_time(value: Any) -> Any:
    return norm_time(value) if isinstance(value, str) else value


def norm_time(value: str) -> str:
    """An ISO timestamp as text that sorts in time order: no zone, 7 fraction digits."""
    text = value.replace("+00:00", "Z").rstrip("Z")
    if "." not in text:
        text += ".0"
    head, frac = text.split(".", 1)
    return f"{head}.{frac.ljust(7, '0')[:7]}"


def compile_filter(text: str | None) -> Predicate:
    if not text or not text.strip():
        return lambda item: True
    return _Parser(text).parse()


def top_conjuncts(text: str | None) -> list[tuple[str, str, Any]]:
    """The `path op value` comparisons a filter ANDs at its top level (none if it has a top-level
    `or`): what a list can use to start from an index instead of scanning."""
    if not text or not text.strip():
        return []
    parser = _Parser(text)
    parser.parse()
    return [] if parser.top_or else parser.conjuncts
