"""User-supplied pieces: `module:function` callables and argv templates with {placeholders}."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import JobFileError

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def render_argv(template: Sequence[str], values: Mapping[str, str], where: str) -> list[str]:
    """Replace {name} in each argument. Each argument stays one argv item: no shell, no splitting."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join("{" + k + "}" for k in values)
            raise JobFileError(f"{where}: unknown placeholder {{{name}}} (known: {known})")
        return values[name]

    return [_PLACEHOLDER.sub(sub, arg) for arg in template]


def load_callable(ref: str, base_dir: Path, where: str) -> Callable[..., Any]:
    """Import 'module:function', looking in the job file's folder first."""
    module_name, _, attr = ref.partition(":")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise JobFileError(f"{where}: cannot import {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise JobFileError(f"{where}: {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def tail(data: bytes | str, lines: int) -> str:
    """The last `lines` lines of some output, as one line for an error message."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    last = [ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip()]
    return " | ".join(last) if last else "(no output)"
