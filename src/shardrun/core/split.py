"""Splitters: plain functions that turn the job's input into ordered pieces in a folder.

Each returns the pieces in task order. A piece is a file, or a folder when `files` puts more than one
file in a task. Custom splitters are a Python callable or an external command (never a shell).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from shardrun.core.errors import JobFileError, SplitError, UsageError
from shardrun.core.filecopy import copy_file
from shardrun.core.plugins import load_callable, render_argv, run_program, tail
from shardrun.core.spec import JobSpec
from shardrun.core.split_plan import (
    PiecePlan,
    materialize_all,
    plan_csv,
    plan_json,
    plan_lines,
)

FUNCTION_ARGS = ("inputs", "outdir", "per_task")  # how a [split] function is called


_DIGITS = re.compile(r"(\d+)")


def natural_key(path: Path) -> list[object]:
    """input2 sorts before input10, as a person expects."""
    return _natural_key(path.name)


def _natural_key(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(name)]


def resolve_inputs(spec: JobSpec) -> list[Path]:
    """The files (or folder) named by [split] input: a file, a glob, or a folder."""
    raw = spec.split.input
    where = f"{spec.source}: [split] input"
    if glob.has_magic(raw):
        pattern = str(spec.path(raw))
        paths = sorted((Path(p) for p in glob.glob(pattern, recursive=True)), key=natural_key)
        files = [p for p in paths if _regular(p, where)]
        if not files:
            raise JobFileError(f"{where} {raw!r} matches no file")
        return files
    path = spec.path(raw)
    if path.is_dir():
        files = _files_in(path, where)
        if not files and spec.split.kind != "command":
            raise JobFileError(f"{where} folder {raw!r} has no files")
        return files if spec.split.kind != "command" else [path]
    if not path.exists():
        raise JobFileError(f"{where} {raw!r} does not exist")
    _regular(path, where)
    return [path]


def _files_in(folder: Path, where: str) -> list[Path]:
    """The regular files directly in `folder`, in natural order. The folder's entries say which
    are plain files or folders without a stat each (a folder of inputs may hold many thousands);
    links and anything else take _regular."""
    with os.scandir(folder) as entries:
        found = [(e.name, e.path) for e in entries
                 if (e.is_file(follow_symlinks=False)
                     or (not e.is_dir(follow_symlinks=False) and _regular(Path(e.path), where)))]
    found.sort(key=lambda item: _natural_key(item[0]))
    return [Path(p) for _, p in found]


def _regular(path: Path, where: str) -> bool:
    """True for a regular file, False for a folder; anything else is an error: reading a FIFO
    blocks until some writer comes, and a device never ends."""
    if path.is_file():
        return True
    if path.is_dir() or not path.exists():  # a dangling link matched by a glob: not an input
        return False
    raise JobFileError(f"{where}: {str(path)!r} is not a regular file (a FIFO, socket or device "
                       "cannot be split)")


def _piece_name(index: int, suffix: str) -> str:
    return f"piece-{index:06d}{suffix}"


def split_lines(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """`per_task` lines per piece, across files in order. Bytes are kept as they are; a last line
    without a newline gets one. Streamed: a huge line costs no memory."""
    return materialize_all(plan_lines(inputs, per_task), inputs, outdir)


def split_files(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """`per_task` files per piece. One file: the piece is a copy of it; more: a folder of copies.

    Copies, never links: a task that appends to its input, or a later edit of the input, must not
    change both the user's file and what the run stored (a reflink makes the copy cheap).
    """
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
            if folder is not outdir:
                folder.mkdir(exist_ok=True)
            used.add(name)
            dest = folder / name
            copy_file(group[0], dest)
        else:
            dest = outdir / _piece_name(index, "")
            dest.mkdir()
            names: set[str] = set()
            for src in group:
                if src.name in names:
                    raise SplitError(f"two inputs named {src.name!r} would land in one task")
                names.add(src.name)
                copy_file(src, dest / src.name)
        pieces.append(dest)
    return pieces


def split_json(inputs: list[Path], outdir: Path, per_task: int) -> list[Path]:
    """Items of a top-level JSON array, `per_task` items per piece (each piece is an array).

    A piece keeps the source's bytes: `[`, items i..j as written (with the separators between them
    as in the source, and `,` between two files' items), `]`. Nothing is re-serialized."""
    return materialize_all(plan_json(inputs, per_task), inputs, outdir)


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
    return materialize_all(plan_csv(inputs, per_task), inputs, outdir)


# The splitters whose pieces are byte ranges of the inputs (core/split_plan.py): their pieces can
# go by reference, cut where they are needed from one copy of the inputs.
PLANNERS: dict[str, Callable[[Sequence[Path], int], list[PiecePlan]]] = {
    "lines": plan_lines,
    "json": plan_json,
    "csv": plan_csv,
}


def plan_job(spec: JobSpec, inputs: list[Path]) -> list[PiecePlan]:
    """The pieces of a `lines`, `csv` or `json` split as plans, nothing written."""
    plans = PLANNERS[spec.split.kind](inputs, units_per_task(spec))
    if not plans:
        raise SplitError(f"{spec.source}: [split] made no pieces from {spec.split.input!r}")
    return plans


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
        code, err = run_program(argv, spec.base_dir, subprocess.DEVNULL)
    except FileNotFoundError:
        raise JobFileError(f"{spec.source}: [split] command: program {argv[0]!r} not found") from None
    if code != 0:
        raise SplitError(f"splitter {' '.join(argv[:3])} exited {code}: {tail(err, 3)}")
    return _listed(outdir)


def split_with_function(spec: JobSpec, inputs: list[Path], outdir: Path) -> list[Path]:
    assert spec.split.function is not None
    fn = load_callable(spec.split.function, spec.base_dir, f"{spec.source}: [split] function")
    result = fn(inputs, outdir, units_per_task(spec))
    return [Path(p) for p in result] if result is not None else _listed(outdir)


def split_job(spec: JobSpec, outdir: Path, inputs: list[Path] | None = None) -> list[Path]:
    """Run the job's splitter into the empty folder `outdir` and return the pieces in task order.
    `inputs`: resolve_inputs(spec), when the caller has just resolved them.

    Every piece returned is shardrun's own: a file or folder inside `outdir`, neither a link nor
    holding one, so the caller may move it into the store without touching a file of the user's.
    """
    if inputs is None:
        inputs = resolve_inputs(spec)
    kind = spec.split.kind
    if kind == "command":
        pieces = own_pieces(split_with_command(spec, inputs, outdir), outdir)
    elif kind == "function":
        pieces = own_pieces(split_with_function(spec, inputs, outdir), outdir)
    else:
        pieces = BUILTIN[kind](inputs, outdir, units_per_task(spec))  # new files, written here
    if not pieces:
        raise SplitError(f"{spec.source}: [split] made no pieces from {spec.split.input!r}")
    return pieces


def own_pieces(pieces: list[Path], outdir: Path) -> list[Path]:
    """The user's splitter's pieces, made shardrun's own: a piece outside `outdir` (say, the
    user's input itself) is copied in, and links inside it are replaced by copies of what they
    point at. Nothing outside `outdir` is moved, changed or deleted."""
    root = outdir.resolve()
    owned = []
    for index, piece in enumerate(pieces, 1):
        if not (piece.is_file() or piece.is_dir()):
            raise SplitError(f"splitter listed {piece}, which is not a file or folder")
        parent = piece.absolute().parent.resolve()
        if parent == root or root in parent.parents:
            _own_in_place(piece)
            owned.append(piece)
        else:
            owned.append(_copy_in(piece, root, index))
    return owned


def _copy_in(src: Path, root: Path, index: int) -> Path:
    dest = root / src.name
    if dest.exists() or dest.is_symlink():
        dest = root / f".shardrun-{index:06d}" / src.name  # a hidden folder: not a listed piece
        dest.parent.mkdir(exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, copy_function=copy_file, ignore_dangling_symlinks=True)
    else:
        copy_file(src, dest)
    return dest


def _own_in_place(path: Path) -> None:
    """Replace symbolic and hard links at or under `path` (inside the pieces folder) by copies."""
    if path.is_symlink() and path.is_dir():
        target = path.resolve()
        path.unlink()  # the link only; copytree follows links, so the copy holds none
        shutil.copytree(target, path, copy_function=copy_file, ignore_dangling_symlinks=True)
    elif path.is_file():
        if path.is_symlink() or path.stat().st_nlink > 1:
            tmp = path.with_name(f".{path.name}.shardrun-copy")
            copy_file(path, tmp)
            os.replace(tmp, path)
    elif path.is_dir():
        for entry in os.scandir(path):
            _own_in_place(Path(entry.path))
