"""Helpers for writing job files and reading run state in tests."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

APPS = Path(__file__).parent / "apps"
PY = sys.executable


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))  # JSON strings are valid TOML basic strings
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def write_job(folder: Path, sections: dict[str, dict[str, Any]], name: str = "job.toml") -> Path:
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def lines_job(folder: Path, n_lines: int = 100, per_task: int = 10, **run: Any) -> Path:
    """A job that upper-cases a numbered text file, `per_task` lines per task."""
    (folder / "big.txt").write_text("".join(f"line {i}\n" for i in range(n_lines)))
    return write_job(folder, {
        "app": {"command": [PY, str(APPS / "upper.py"), "-i", "{input}", "-o", "{output}"]},
        "split": {"input": "big.txt", "method": "lines", "per_task": per_task},
        "merge": {"method": "concat", "output": "result.txt"},
        "run": {"concurrency": 2, **run},
    })


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: it is held, bound and
    never listening, so no other server (of this session or another) can take it meanwhile, as it
    could a port merely found free."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])
