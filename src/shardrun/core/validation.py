"""Pydantic's validation errors as one line for the user, naming the file and every key."""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def describe(loc: Sequence[int | str]) -> str:
    """('split', 'per_task') -> '[split] per_task'; ('app', 'command', 0) -> '[app] command[0]'."""
    if not loc:
        return "the file"
    head, *rest = loc
    key = ""
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return f"[{head}] {key}".strip() if rest else f"[{head}]"


_EXPECTED = {"int_type": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
             "float_type": "a number", "string_type": "a string", "list_type": "a list",
             "dict_type": "a table", "model_type": "a table"}


def _got(value: Any) -> str:
    """What a TOML value is, in the job file's words: 'the string "10"', 'true', 'the number 1.5'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: `X`, `X | None`."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def known_keys(model: type[BaseModel], where: Sequence[int | str],
               top_keys: Sequence[str] | None = None) -> list[str]:
    """The keys a file may write at `where` inside `model`; `top_keys`: those of the top level,
    when they are not simply the model's fields."""
    if not where and top_keys is not None:
        return list(top_keys)
    for part in where:
        field = model.model_fields.get(str(part))
        sub = _model_in(field.annotation) if field is not None else None
        if sub is None:
            return []
        model = sub
    return [k for k, f in model.model_fields.items() if not f.exclude]


def unknown_key(source: Path | str, key: str, where: str, valid: Sequence[str]) -> str:
    """`unknown key 'per_taks' in [split]; did you mean 'per_task'?`"""
    in_section = f" in {where}" if where else ""
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{source}: unknown key '{key}'{in_section}{hint}"


def format_validation_error(source: Path | str, err: ValidationError, model: type[BaseModel],
                            prefix: tuple[str, ...] = (),
                            top_keys: Sequence[str] | None = None) -> str:
    """One line for all of `err`, raised by validating `model` found under `prefix` (a provider's
    section name) in the file `source`."""
    lines = []
    for e in err.errors():
        where = describe((*prefix, *e["loc"]))
        if e["type"] == "extra_forbidden":
            *inner, key = e["loc"]
            section = describe((*prefix, *inner)) if (prefix or inner) else ""
            lines.append(unknown_key(source, str(key), section, known_keys(model, inner, top_keys)))
        elif e["type"] == "missing":
            lines.append(f"{source}: {where} is required")
        elif e["type"] in _EXPECTED:
            lines.append(f"{source}: {where}: must be {_EXPECTED[e['type']]}, not {_got(e['input'])}")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"{source}: {where}: {msg}")
    return "; ".join(lines)
