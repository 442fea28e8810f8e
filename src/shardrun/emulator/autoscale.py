"""The autoscale formula subset: statements `$name = expression;` (or `name = ...;` for the user's
own variables) over numbers and sampled metrics.

Supported: arithmetic (`+ - * /`), comparisons, `&&`, `||`, `!`, the ternary `c ? a : b`,
`min`, `max`, `avg`, `sum`, `count`, the metrics `$PendingTasks`, `$ActiveTasks`, `$RunningTasks`,
`$SucceededTasks`, `$FailedTasks` and `$PreemptedNodeCount` read with `.GetSample(n or interval)`
and `.GetSamplePercent(interval)`, the scalars `$CurrentDedicatedNodes` and
`$CurrentLowPriorityNodes`, `TimeInterval_*` constants, and the outputs `$TargetDedicatedNodes`,
`$TargetLowPriorityNodes` and `$NodeDeallocationOption`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

METRICS = (
    "$PendingTasks",
    "$ActiveTasks",
    "$RunningTasks",
    "$SucceededTasks",
    "$FailedTasks",
    "$PreemptedNodeCount",
)
DEALLOCATION = ("requeue", "terminate", "taskcompletion", "retaineddata")
INTERVALS = {
    "TimeInterval_Zero": 0.0,
    "TimeInterval_Second": 1.0,
    "TimeInterval_Minute": 60.0,
    "TimeInterval_Hour": 3600.0,
    "TimeInterval_Day": 86400.0,
    "TimeInterval_Week": 604800.0,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<var>\$\w+)|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[-+*/<>!?:().,=;]))"
)
MAX_FORMULA_CHARS = 8000


class FormulaError(Exception):
    """`syntax` is True when the formula cannot be parsed (400 at the API), False when it fails to run."""

    def __init__(self, message: str, *, syntax: bool) -> None:
        super().__init__(message)
        self.syntax = syntax


@dataclass(frozen=True)
class Interval:
    seconds: float


@dataclass(frozen=True)
class Samples:
    """A metric's history, newest last, with the period at which samples were taken."""

    values: tuple[float, ...]
    period: float


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = re.sub(r"//[^\n]*", "", text)
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FormulaError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}", syntax=True)
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent to a tree of tuples; evaluation is separate so a formula parses once."""

    BINARY: ClassVar[list[tuple[str, ...]]] = [
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", "<=", ">", ">="),
        ("+", "-"),
        ("*", "/"),
    ]

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise FormulaError("the formula ends too early", syntax=True)
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expect(self, value: str) -> None:
        _kind, text = self.take()
        if text != value:
            raise FormulaError(f"expected {value!r}, found {text!r}", syntax=True)

    def statements(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        while self.peek() is not None:
            if self.peek() == ";":
                self.take()
                continue
            kind, name = self.take()
            # `$name` is a service variable; a plain name is the user's own, as in the service's
            # examples (`maxNumberofVMs = 25;`).
            if kind not in ("var", "name") or name in INTERVALS or name in DEALLOCATION:
                raise FormulaError(f"a statement starts with a variable and =, found {name!r}",
                                   syntax=True)
            self.expect("=")
            out.append((name, self.expression()))
            if self.peek() not in (None, ";"):
                raise FormulaError(f"expected ';', found {self.peek()!r}", syntax=True)
        return out

    def expression(self) -> Any:
        cond = self.binary(0)
        if self.peek() == "?":
            self.take()
            yes = self.expression()
            self.expect(":")
            no = self.expression()
            return ("?", cond, yes, no)
        return cond

    def binary(self, level: int) -> Any:
        if level == len(self.BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self.BINARY[level]:
            op = self.take()[1]
            left = (op, left, self.binary(level + 1))
        return left

    def unary(self) -> Any:
        if self.peek() in ("-", "!"):
            op = self.take()[1]
            return ("neg" if op == "-" else "not", self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            return ("num", float(text))
        if kind == "var":
            return ("var", text)
        if text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if kind == "name":
            if text in INTERVALS:
                return ("interval", INTERVALS[text])
            if text in DEALLOCATION:
                return ("word", text)
            if self.peek() == "(":
                return ("call", text.lower(), self.arguments())
            return ("var", text)  # a user variable; undefined ones fail at evaluation
        raise FormulaError(f"unexpected {text!r}", syntax=True)

    def postfix(self, node: Any) -> Any:
        while self.peek() == ".":
            self.take()
            kind, method = self.take()
            if kind != "name":
                raise FormulaError(f"expected a method name after '.', found {method!r}", syntax=True)
            node = ("method", method, node, self.arguments())
        return node

    def arguments(self) -> list[Any]:
        self.expect("(")
        args: list[Any] = []
        while self.peek() != ")":
            args.append(self.expression())
            if self.peek() == ",":
                self.take()
        self.expect(")")
        return args


def _flatten(values: list[Any]) -> list[float]:
    out: list[float] = []
    for v in values:
        if isinstance(v, list):
            out.extend(_flatten(v))
        elif isinstance(v, float | int) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise FormulaError(f"{v!r} is not a number", syntax=False)
    return out


_FUNCTIONS = {
    "min": min,
    "max": max,
    "sum": sum,
    "count": len,
    "avg": lambda xs: sum(xs) / len(xs),
}


class Formula:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_FORMULA_CHARS:
            raise FormulaError("the formula is too long", syntax=True)
        self.text = text
        self.statements = _Parser(text).statements()
        if not self.statements:
            raise FormulaError("the formula is empty", syntax=True)

    def evaluate(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the statements; `inputs` maps system variable names to numbers or `Samples`."""
        env: dict[str, Any] = dict(inputs)
        assigned: dict[str, Any] = {}
        for name, tree in self.statements:
            value = self._eval(tree, env)
            if isinstance(value, Samples):
                raise FormulaError(f"{name}: read metric samples with GetSample()", syntax=False)
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            env[name] = assigned[name] = value
        return assigned

    def _eval(self, node: Any, env: dict[str, Any]) -> Any:
        kind = node[0]
        if kind in ("num", "word"):
            return node[1]
        if kind == "interval":
            return Interval(node[1])
        if kind == "var":
            if node[1] not in env:
                raise FormulaError(f"{node[1]} is not defined", syntax=False)
            return env[node[1]]
        if kind == "?":
            return self._eval(node[2] if self._number(node[1], env) else node[3], env)
        if kind == "neg":
            return -self._number(node[1], env)
        if kind == "not":
            return 0.0 if self._number(node[1], env) else 1.0
        if kind == "call":
            if node[1] not in _FUNCTIONS:
                raise FormulaError(f"unknown function {node[1]}()", syntax=False)
            values = _flatten([self._eval(a, env) for a in node[2]])
            if not values:
                raise FormulaError(f"{node[1]}() needs at least one value", syntax=False)
            return float(_FUNCTIONS[node[1]](values))  # type: ignore[operator]
        if kind == "method":
            return self._method(node[1], self._eval(node[2], env), [self._eval(a, env) for a in node[3]])
        return self._binary(node[0], self._eval(node[1], env), self._eval(node[2], env))

    def _number(self, node: Any, env: dict[str, Any]) -> float:
        value = self._eval(node, env)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, list):
            raise FormulaError("a list of samples used where one number is needed", syntax=False)
        if not isinstance(value, float | int):
            raise FormulaError(f"{value!r} is not a number", syntax=False)
        return float(value)

    @staticmethod
    def _method(name: str, target: Any, args: list[Any]) -> Any:
        if not isinstance(target, Samples):
            raise FormulaError(f"{name}() applies to a sampled metric", syntax=False)
        if name == "GetSample":
            if len(args) not in (1, 2):
                raise FormulaError("GetSample takes a count or an interval", syntax=False)
            if isinstance(args[0], Interval):
                wanted = max(1, int(args[0].seconds // target.period) + 1) if target.period > 0 else 1
            else:
                wanted = max(1, int(_flatten([args[0]])[0]))
            return list(target.values[-wanted:])
        if name == "GetSamplePercent":
            if not args or not isinstance(args[0], Interval):
                raise FormulaError("GetSamplePercent takes an interval", syntax=False)
            expected = max(1, int(args[0].seconds // target.period)) if target.period > 0 else 1
            return min(100.0, 100.0 * len(target.values) / expected)
        raise FormulaError(f"unknown method {name}()", syntax=False)

    @staticmethod
    def _binary(op: str, left: Any, right: Any) -> Any:
        # A one-sample vector (GetSample(1)) reads as the number it holds.
        left, right = (v[0] if isinstance(v, list) and len(v) == 1 else v for v in (left, right))
        if isinstance(left, Interval) or isinstance(right, Interval):
            seconds = [v.seconds if isinstance(v, Interval) else float(v) for v in (left, right)]
            if op == "*":
                return Interval(seconds[0] * seconds[1])
            if op in ("+", "-"):
                return Interval(seconds[0] + seconds[1] if op == "+" else seconds[0] - seconds[1])
            raise FormulaError(f"cannot apply {op} to a time interval", syntax=False)
        if isinstance(left, list) or isinstance(right, list):
            raise FormulaError(f"cannot apply {op} to a list of samples; use min/max/avg", syntax=False)
        if isinstance(left, str) or isinstance(right, str):
            if op in ("==", "!="):
                return float((left == right) == (op == "=="))
            raise FormulaError(f"cannot apply {op} to {left!r}", syntax=False)
        a, b = float(left), float(right)
        if op == "/":
            if b == 0:
                raise FormulaError("division by zero", syntax=False)
            return a / b
        table = {
            "+": a + b,
            "-": a - b,
            "*": a * b,
            "<": float(a < b),
            "<=": float(a <= b),
            ">": float(a > b),
            ">=": float(a >= b),
            "==": float(a == b),
            "!=": float(a != b),
            "&&": float(bool(a) and bool(b)),
            "||": float(bool(a) or bool(b)),
        }
        return table[op]


def results_text(assigned: dict[str, Any]) -> str:
    """The `results` string of an autoscale run: every assigned variable, `;`-separated."""

    def show(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, list):
            return "[" + ",".join(show(v) for v in value) + "]"
        if isinstance(value, Interval):
            return f"{value.seconds}s"
        return str(value)

    return ";".join(f"{name}={show(value)}" for name, value in assigned.items())


@dataclass(frozen=True)
class Decision:
    dedicated: int
    low_priority: int
    deallocation: str
    results: str


def decide(formula: Formula, inputs: dict[str, Any], current_targets: tuple[int, int]) -> Decision:
    """Evaluate and turn the outputs into pool targets (unassigned targets keep their value)."""
    assigned = formula.evaluate(inputs)
    assigned.setdefault("$NodeDeallocationOption", "requeue")

    def target(name: str, current: int) -> int:
        value = assigned.get(name, current)
        if not isinstance(value, float | int):
            raise FormulaError(f"{name} must be a number", syntax=False)
        return max(0, int(value))

    option = assigned["$NodeDeallocationOption"]
    if option not in DEALLOCATION:
        raise FormulaError(f"$NodeDeallocationOption must be one of {', '.join(DEALLOCATION)}", syntax=False)
    return Decision(
        target("$TargetDedicatedNodes", current_targets[0]),
        target("$TargetLowPriorityNodes", current_targets[1]),
        option,
        results_text(assigned),
    )
