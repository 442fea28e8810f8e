"""User-supplied pieces: `module:function` callables and argv templates with {placeholders}."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from shardrun.core.errors import JobFileError


def render_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace the known {name}s in each argument, in one pass, leaving other braces alone
    (they may be code, as in `python3 -c`). Each argument stays one argv item: no shell."""
    pattern = _placeholders(tuple(values))
    return [pattern.sub(lambda m: values[m.group(0)[1:-1]], arg) for arg in template]


@functools.lru_cache(maxsize=32)
def _placeholders(names: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern per set of names: a local run renders an argv per task with the same names."""
    return re.compile("|".join(re.escape("{" + k + "}") for k in names))


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


def die_with_parent() -> None:
    """For subprocess preexec_fn: the child is killed when the client dies, however it dies (kill -9
    included), so a splitter or merger never outlives the run that started it. Linux only."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_program(argv: list[str], cwd: Path, stdout: IO[bytes] | int) -> tuple[int, bytes]:
    """Run a splitter or merger command: (exit code, stderr). It runs in a process group of its
    own, and the whole group is killed when it ends or the client stops it (Ctrl-C, an error), so
    nothing it started (`sh -c "sort | uniq"`) goes on writing after. FileNotFoundError when the
    program is missing."""
    # stderr goes to a file, not a pipe: a background process holding the pipe open would keep
    # a reader waiting after the command itself has ended.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=errors, start_new_session=True, preexec_fn=die_with_parent)
        try:
            proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        size = errors.seek(0, os.SEEK_END)
        errors.seek(max(0, size - 64 * 1024))
        return proc.returncode, errors.read()
