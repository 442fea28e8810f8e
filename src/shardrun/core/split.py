"""Splitters: plain functions that turn the job's input into ordered pieces in a folder.

Each returns the pieces in task order. A piece is a file, or a folder when `files` puts more than one
file in a task. Custom splitters are a Python callable or an external command (never a shell).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from shardrun.core.errors import JobFileError, SplitError, UsageError
from shardrun.core.plugins import load_callable, render_argv, tail
from shardrun.core.spec import JobSpec

CHUNK = 1 << 20


def natural_key(path: Path) -> list[object]:
    """input2 sorts before input10, as a person expects."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def resolve_inputs(spec: JobSpec) -> list[Path]:
    """The files (or folder) named by [split] input: a file, a glob, or a folder."""
    raw = spec.split.input
    where = f"{spec.source}: [split] input"
    if glob.has_magic(raw):
        pattern = str(spec.path(raw))
        paths = sorted((Path(p) for p in glob.glob(pattern, recursive=True)), key=natural_key)
        files = [p for p in paths if p.is_file()]
        if not files:
            raise JobFileError(f"{where} {raw!r} matches no file")
        return files
    path = spec.path(raw)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file()), key=natural_key)
        if not files and spec.split.kind != "command":
            raise JobFileError(f"{where} folder {raw!r} has no files")
        return files if spec.split.kind != "command" else [path]
    if not path.exists():
        raise JobFileError(f"{where} {raw!r} does not exist")
    return [path]


def _piece_name(index: int, suffix: str) -> str:
    return f"piece-{index:06d}{suffix}"


def split_lines(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """`per_task` lines per piece, across files in order. Bytes are kept as they are."""
    suffix = inputs[0].suffix if inputs else ""
    pieces: list[Path] = []
    out = None
    count = 0
    try:
        for line in _lines(inputs):
            if out is None:
                path = outdir / _piece_name(len(pieces) + 1, suffix)
                pieces.append(path)
                out = path.open("wb")
            out.write(line)
            count += 1
            if count == per_task:
                out.close()
                out, count = None, 0
    finally:
        if out is not None:
            out.close()
    return pieces


def _lines(inputs: Iterable[Path]) -> Iterator[bytes]:
    for path in inputs:
        with path.open("rb") as f:
            for line in f:
                # a last line without newline must not run into the next file's first line
                yield line if line.endswith(b"\n") else line + b"\n"


def split_files(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """`per_task` files per piece. One file: the piece is that file; more: a folder of them."""
    pieces: list[Path] = []
    used: set[str] = set()
    for start in range(0, len(inputs), per_task):
        group = inputs[start : start + per_task]
        index = len(pieces) + 1
        if per_task == 1:
            # Keep the user's file name (apps and recombiners may care); a subfolder only when two
            # inputs share a name, since every mkdir costs at thousands of tasks.
            name = group[0].name
            folder = outdir if name not in used and not name.startswith("piece-") else outdir / f"{index:06d}"
            folder.mkdir(exist_ok=True)
            used.add(name)
            dest = folder / name
            _link_or_copy(group[0], dest)
        else:
            dest = outdir / _piece_name(index, "")
            dest.mkdir()
            names: set[str] = set()
            for src in group:
                if src.name in names:
                    raise SplitError(f"two inputs named {src.name!r} would land in one task")
                names.add(src.name)
                _link_or_copy(src, dest / src.name)
        pieces.append(dest)
    return pieces


def _link_or_copy(src: Path, dest: Path) -> None:
    # A hard link costs nothing; tasks treat inputs as read-only.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def split_json(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """Items of a top-level JSON array, `per_task` items per piece (each piece is an array)."""
    items: list[object] = []
    for path in inputs:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SplitError(f"{path}: not valid JSON: line {err.lineno}: {err.msg}") from None
        except UnicodeDecodeError as err:
            raise SplitError(f"{path}: not UTF-8 text ({err.reason})") from None
        if not isinstance(data, list):
            raise SplitError(f"{path}: the json splitter needs a top-level array")
        items.extend(data)
    pieces: list[Path] = []
    for start in range(0, len(items), per_task):
        path = outdir / _piece_name(len(pieces) + 1, ".json")
        path.write_text(json.dumps(items[start : start + per_task], ensure_ascii=False))
        pieces.append(path)
    return pieces


def csv_records(path: Path) -> Iterator[bytes]:
    """Raw CSV records; a quoted field may span lines (quote parity tells where a record ends)."""
    with path.open("rb") as f:
        record = b""
        quotes = 0
        for line in f:
            record += line
            quotes += line.count(b'"')
            if quotes % 2 == 0:
                yield record if record.endswith(b"\n") else record + b"\n"
                record, quotes = b"", 0
        if record:
            raise SplitError(f"{path}: unterminated quoted field at the end of the file")


def split_csv(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """`per_task` rows per piece, each piece starting with the header row."""
    header: bytes | None = None
    pieces: list[Path] = []
    out = None
    count = 0
    try:
        for path in inputs:
            records = csv_records(path)
            first = next(records, None)
            if first is None:
                continue
            if header is None:
                header = first
            elif first.rstrip(b"\r\n") != header.rstrip(b"\r\n"):
                raise SplitError(f"{path}: header differs from {inputs[0].name}'s")
            for record in records:
                if out is None:
                    piece = outdir / _piece_name(len(pieces) + 1, ".csv")
                    pieces.append(piece)
                    out = piece.open("wb")
                    out.write(header)
                out.write(record)
                count += 1
                if count == per_task:
                    out.close()
                    out, count = None, 0
    finally:
        if out is not None:
            out.close()
    return pieces


BUILTIN: dict[str, Callable[[list[Path], Path, int], list[Path]]] = {
    "lines": split_lines,
    "files": split_files,
    "json": split_json,
    "csv": split_csv,
}


def _listed(outdir: Path) -> list[Path]:
    return sorted((p for p in outdir.iterdir() if not p.name.startswith(".")), key=natural_key)


def units_per_task(spec: JobSpec) -> int:
    """[split] per_task as a number: "auto" is chosen by the planner before a run splits."""
    per_task = spec.split.per_task
    if per_task == "auto":
        raise UsageError(f'{spec.source}: [split] per_task = "auto" is chosen when a run starts; '
                         f"`shardrun plan {spec.source}` shows the size it would choose")
    return per_task


def split_with_command(spec: JobSpec, inputs: list[Path], outdir: Path) -> list[Path]:
    assert spec.split.command is not None
    if len(inputs) != 1:
        raise JobFileError(
            f"{spec.source}: [split] command takes one input, but {spec.split.input!r} "
            f"matches {len(inputs)} files; name a folder or one file"
        )
    values = {"input": str(inputs[0]), "outdir": str(outdir), "per_task": str(units_per_task(spec))}
    argv = render_argv(spec.split.command, values)
    try:
        proc = subprocess.run(
            argv, cwd=spec.base_dir, capture_output=True, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise JobFileError(f"{spec.source}: [split] command: program {argv[0]!r} not found") from None
    if proc.returncode != 0:
        raise SplitError(
            f"splitter {' '.join(argv[:3])} exited {proc.returncode}: {tail(proc.stderr, 3)}"
        )
    return _listed(outdir)


def split_with_function(spec: JobSpec, inputs: list[Path], outdir: Path) -> list[Path]:
    assert spec.split.function is not None
    fn = load_callable(spec.split.function, spec.base_dir, f"{spec.source}: [split] function")
    result = fn(inputs, outdir, units_per_task(spec))
    return [Path(p) for p in result] if result is not None else _listed(outdir)


def split_job(spec: JobSpec, outdir: Path) -> list[Path]:
    """Run the job's splitter into the empty folder `outdir` and return the pieces in task order."""
    inputs = resolve_inputs(spec)
    kind = spec.split.kind
    if kind == "command":
        pieces = split_with_command(spec, inputs, outdir)
    elif kind == "function":
        pieces = split_with_function(spec, inputs, outdir)
    else:
        pieces = BUILTIN[kind](inputs, outdir, units_per_task(spec))
    if not pieces:
        raise SplitError(f"{spec.source}: [split] made no pieces from {spec.split.input!r}")
    for p in pieces:
        if not p.exists():
            raise SplitError(f"splitter listed {p}, which does not exist")
    return pieces
