"""Durations and ages as the job file and the command line write them: '90s', '10m', '1h30m', '7d'."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")


def duration_value(v: Any) -> Any:
    """A duration key's value before its type is checked: text is parsed, a number is checked; a
    boolean is refused (TOML's `true` is no number of seconds)."""
    if isinstance(v, bool):
        raise ValueError("must be a duration like '90s', '10m' or a number of seconds, not true/false")
    if isinstance(v, str):
        return parse_duration(v)
    if isinstance(v, int | float):
        return _finite_seconds(float(v), repr(v))
    return v


def _finite_seconds(value: float, text: str) -> float:
    # nan compares false with everything, so no timeout would ever fire; inf never ends either.
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a duration: give a finite number of seconds")
    if value < 0:
        raise ValueError(f"{text} is not a duration: it is negative")
    return value


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '250ms' or a bare number of seconds -> seconds (finite, >= 0)."""
    t = text.strip().lower()
    try:
        number = float(t)  # also 'nan', 'inf', '-5' and '1e9': checked below
    except ValueError:
        number = None
    if number is not None:
        return _finite_seconds(number, repr(text))
    pos, total = 0, 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * scale[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise ValueError(f"{text!r} is not a duration (try '90s', '10m' or '1h30m')")
    return _finite_seconds(total, repr(text))


_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dw])\s*$")


def parse_age(text: str) -> float:
    """'7d', '2w', '36h', '90m' -> seconds."""
    m = _DAYS.match(text.lower())
    if m:
        return float(m.group(1)) * (86400.0 if m.group(2) == "d" else 7 * 86400.0)
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an age (try '7d', '2w' or '36h')") from None
