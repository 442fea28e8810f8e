"""Mergers: plain functions that combine task outputs, always in task order, into one file.

Every merger writes to a temporary file beside the destination and renames it at the end, so a
failed merge never leaves half a result where the real one should be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shardrun.core.errors import JobFileError, MergeError, SplitError
from shardrun.core.plugins import load_callable, render_argv, tail
from shardrun.core.spec import JobSpec
from shardrun.core.split import csv_records


@contextmanager
def _atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest` that replaces `dest` only if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _atomic(dest: Path) -> Iterator[IO[bytes]]:
    with _atomic_path(dest) as tmp, tmp.open("wb") as f:
        yield f


def merge_concat(outputs: list[Path], dest: Path) -> None:
    """Bytes of each output, one after another."""
    with _atomic(dest) as out:
        for path in outputs:
            with path.open("rb") as f:
                shutil.copyfileobj(f, out)


def merge_jsonl(outputs: list[Path], dest: Path) -> None:
    """JSON Lines: every non-empty line of every output, each checked to be JSON."""
    with _atomic(dest) as out:
        for path in outputs:
            with path.open("rb") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        json.loads(line)
                    except ValueError:
                        raise MergeError(f"{path}: line {lineno} is not JSON") from None
                    out.write(line if line.endswith(b"\n") else line + b"\n")


def merge_csv(outputs: list[Path], dest: Path) -> None:
    """CSV with one header: the first output's; the others must have the same one."""
    header: bytes | None = None
    with _atomic(dest) as out:
        for path in outputs:
            try:
                records = csv_records(path)
                first = next(records, None)
                if first is None:
                    continue
                if header is None:
                    header = first
                    out.write(first)
                elif first.rstrip(b"\r\n") != header.rstrip(b"\r\n"):
                    raise MergeError(f"{path}: CSV header differs from the first output's")
                for record in records:
                    out.write(record)
            except SplitError as err:
                raise MergeError(str(err)) from None


def merge_json(outputs: list[Path], dest: Path) -> None:
    """One JSON array: an output that is an array adds its items, any other value adds itself."""
    items: list[object] = []
    for path in outputs:
        try:
            value = json.loads(path.read_bytes())
        except ValueError as err:
            raise MergeError(f"{path}: not valid JSON ({err})") from None
        if isinstance(value, list):
            items.extend(value)
        else:
            items.append(value)
    with _atomic(dest) as out:
        out.write(json.dumps(items, ensure_ascii=False, indent=1).encode())
        out.write(b"\n")


BUILTIN: dict[str, Callable[[list[Path], Path], None]] = {
    "concat": merge_concat,
    "jsonl": merge_jsonl,
    "csv": merge_csv,
    "json": merge_json,
}


def merge_with_command(spec: JobSpec, outdir: Path, dest: Path) -> None:
    """Run the user's recombiner on a folder of outputs named in task order.

    With an {output} placeholder the command writes the result itself; without one, its standard
    output becomes the result (the classic `recombiner.py out/ > result` shape).
    """
    assert spec.merge.command is not None
    where = f"{spec.source}: [merge] command"
    writes_itself = any("{output}" in arg for arg in spec.merge.command)
    with _atomic_path(dest) as tmp, tmp.open("wb") as out:
        argv = render_argv(spec.merge.command, {"outdir": str(outdir), "output": str(tmp)})
        try:
            proc = subprocess.run(
                argv,
                cwd=spec.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if writes_itself else out,
                stderr=subprocess.PIPE,
                check=False,
            )
        except FileNotFoundError:
            raise JobFileError(f"{where}: program {argv[0]!r} not found") from None
        if proc.returncode != 0:
            raise MergeError(
                f"merger {' '.join(argv[:3])} exited {proc.returncode}: {tail(proc.stderr, 3)}"
            )


def merge_outputs(spec: JobSpec, outputs: list[Path], outdir: Path) -> Path:
    """Merge the outputs (task order) into [merge] output. `outdir` is the folder that holds them."""
    dest = spec.path(spec.merge.output)
    kind = spec.merge.kind
    if kind == "command":
        merge_with_command(spec, outdir, dest)
    elif kind == "function":
        assert spec.merge.function is not None
        fn = load_callable(spec.merge.function, spec.base_dir, f"{spec.source}: [merge] function")
        with _atomic_path(dest) as tmp:
            fn(outputs, tmp)
    else:
        BUILTIN[kind](outputs, dest)
    return dest
