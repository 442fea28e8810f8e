"""Helpers for writing job files and reading run state in tests."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

APPS = Path(__file__).parent / "apps"
PY = sys.executable


def _key(k: str) -> str:
    """A key as tomli_w writes it: bare when it can be, else quoted."""
    return str(tomli_w.dumps({k: 0})).rsplit(" = ", 1)[0]


def toml_value(v: Any) -> str:
    """One TOML value on one line (a table as `{k = v}`); strings escaped by tomli_w."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):  # on one line: tests edit job files as text
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    plain = str(v) if isinstance(v, Path) else v
    return str(tomli_w.dumps({"v": plain})).removeprefix("v = ").rstrip("\n")


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
