"""Mergers: plain functions that combine task outputs, always in task order, into one file (or,
with method = "folder", a folder of them under their own names).

Every merger writes to a temporary file beside the destination and renames it at the end, so a
failed merge never leaves half a result where the real one should be. The merged result is the one
file shardrun writes outside its home, so `check_output` refuses any destination that would
replace something of the user's that shardrun must only read.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from shardrun.core.atomic import (
    OLD_SUFFIX,
    PART_SUFFIX,
    atomic_file,
    atomic_path,
    locked_folder,
    part_prefix,
    remove_stale_parts,
)
from shardrun.core.errors import JobFileError, MergeError, SplitError
from shardrun.core.plugins import load_callable, render_argv, run_program, tail
from shardrun.core.spec import JobSpec
from shardrun.core.split import csv_records, resolve_inputs
from shardrun.core.workspace import default_home

FUNCTION_ARGS = ("outputs", "dest")  # how a [merge] function is called: fn(outputs, dest)
MERGED_MARK = ".shardrun-merge"  # in a folder a folder merge wrote


def check_output(spec: JobSpec, inputs: Sequence[Path] | None = None,
                 home: Path | None = None) -> None:
    """Raise JobFileError unless [merge] output is a file shardrun may replace.

    Refused, with symbolic links followed: an existing folder; an input file, a file inside an
    input folder or matched by the input glob (the next run would split the result); the job
    file, [app] config, an [app] files entry or a program file [app] command names; anything
    inside shardrun's home (`home`, default: the default home). `inputs`: the resolved input files;
    None resolves them here and tolerates inputs that are gone (a merge long after the run).
    """
    raw = spec.merge.output
    real = spec.path(raw).resolve()

    def refuse(why: str) -> JobFileError:
        return JobFileError(f"{spec.source}: [merge] output {str(raw)!r} {why}; name another file")

    folder = spec.merge.kind == "folder"
    if folder and real.is_dir() and not is_merged_folder(real):
        raise refuse(f"is a folder shardrun did not write (no {MERGED_MARK} in it)")
    if folder and (real.is_file() or spec.path(raw).is_symlink()):
        raise refuse("is a file or a link, and method = 'folder' writes a folder")
    if not folder and real.is_dir():
        raise refuse("is a folder")
    if real.parent.exists() and not real.parent.is_dir():
        raise refuse(f"is inside {real.parent}, which is not a folder")
    for path, what in _named_files(spec):
        if _same(real, path) or (folder and _inside(path.resolve(), real)):
            raise refuse(f"is {what}" if _same(real, path) else f"holds {what}")
    if inputs is None:
        try:
            inputs = resolve_inputs(spec)
        except JobFileError:
            inputs = []
    same_as_output = _SameFile(real)
    for path in inputs:
        if same_as_output(path):
            raise refuse(f"is the input {str(path)!r}")
        if folder and _inside(path.resolve(), real):
            raise refuse(f"holds the input {str(path)!r}")
    raw_input = spec.split.input
    if glob.has_magic(raw_input):
        pattern = os.path.normpath(spec.path(raw_input))
        if _glob_matches(pattern, os.path.normpath(spec.path(raw).absolute())) or _glob_matches(
                pattern, str(real)):
            raise refuse(f"is matched by [split] input {raw_input!r}")
    elif spec.path(raw_input).is_dir() and _inside(real, spec.path(raw_input).resolve()):
        raise refuse(f"is inside the input folder {raw_input!r}")
    home = (home or default_home()).expanduser().absolute().resolve()
    if real == home or _inside(real, home):
        raise refuse(f"is inside shardrun's home {home}")


def _named_files(spec: JobSpec) -> Iterator[tuple[Path, str]]:
    if spec.source is not None:
        yield Path(spec.source), "the job file"
    if spec.app.config is not None:
        yield spec.path(spec.app.config), "[app] config"
    for i, f in enumerate(spec.app.files):
        yield spec.path(f), f"[app] files[{i}]"
    for arg in spec.app.command or []:
        if arg and "{" not in arg and not arg.startswith("-") and _is_file(spec.path(arg)):
            yield spec.path(arg), "a file [app] command names"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # an argument that is no path at all, e.g. a script too long for a file name
        return False


def _same(real: Path, other: Path) -> bool:
    """The same file: one path after links are followed, or one inode (another name for it)."""
    try:
        return real == other.resolve() or os.path.samefile(real, other)
    except OSError:
        return False


class _SameFile:
    """`_same(real, path)` for many paths at one stat each (thousands of inputs are checked twice a
    run; resolving each one costs a system call per folder of its path).

    An existing `path` is the same file as `real` exactly when both name one inode: if `real`
    exists, the identity of the two stats decides; if it does not, no existing file is it (a path
    that resolves to `real` would make it exist). A path that cannot be stat'ed (gone, a dangling
    link) takes the full check."""

    def __init__(self, real: Path) -> None:
        self.real = real
        try:
            st = os.stat(real)
            self.identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            self.identity = None

    def __call__(self, path: Path) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return _same(self.real, path)
        return (st.st_dev, st.st_ino) == self.identity


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def _glob_matches(pattern: str, path: str) -> bool:
    """Whether glob.glob(pattern, recursive=True) would list `path` if it existed."""
    return _match_parts(pattern.split(os.sep), path.split(os.sep))


def _match_parts(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":  # zero or more folders, never hidden ones (as glob does)
        return any(_match_parts(rest, parts[i:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    if not parts:
        return False
    name = parts[0]
    if glob.has_magic(head):
        if name.startswith(".") and not head.startswith("."):
            return False  # glob's '*' and '?' do not match a leading dot
        matched = fnmatch.fnmatchcase(name, head)
    else:
        matched = name == head
    return matched and _match_parts(rest, parts[1:])


def merge_concat(outputs: list[Path], dest: Path) -> None:
    """Bytes of each output, one after another."""
    with atomic_file(dest) as out:
        for path in outputs:
            with path.open("rb") as f:
                shutil.copyfileobj(f, out)


def merge_jsonl(outputs: list[Path], dest: Path) -> None:
    """JSON Lines: every line of every output but the empty ones, each checked to be JSON, and a
    newline after an output's last line where it has none. A line of only spaces or a CR is no
    JSON, so it fails the merge (the cluster merge, which cannot parse JSON, gives the same bytes
    for every output this accepts: providers/azure/batch_merge.py)."""
    with atomic_file(dest) as out:
        for path in outputs:
            with path.open("rb") as f:
                for lineno, line in enumerate(f, 1):
                    if line == b"\n":
                        continue
                    try:
                        json.loads(line)
                    except ValueError:
                        raise MergeError(f"{path}: line {lineno} is not JSON") from None
                    out.write(line if line.endswith(b"\n") else line + b"\n")


def merge_csv(outputs: list[Path], dest: Path) -> None:
    """CSV with one header: the first output's; the others must have the same one."""
    header: bytes | None = None
    with atomic_file(dest) as out:
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


JSON_SPACE = b" \t\r\n"


def merge_json(outputs: list[Path], dest: Path) -> None:
    """One JSON array: an output that is an array adds its items, any other value adds itself.

    The items keep their text as the outputs wrote it (no re-serialization, so the cluster merge
    can give the same bytes): `[` + each value's text, or each array's text between its brackets,
    joined by `,` + `]` and a newline. Whitespace around an output's value is dropped; an empty
    array adds nothing. Outputs must be UTF-8 without a byte order mark."""
    items: list[bytes] = []
    for path in outputs:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
            value = json.loads(data)
        except ValueError as err:
            raise MergeError(f"{path}: not valid JSON in UTF-8 ({err})") from None
        text = data.strip(JSON_SPACE)
        if text.startswith(b"\xef\xbb\xbf"):
            raise MergeError(f"{path}: starts with a byte order mark; write plain UTF-8")
        if isinstance(value, list):
            if value:
                items.append(text[1:-1])
        else:
            items.append(text)
    with atomic_file(dest) as out:
        out.write(b"[" + b",".join(items) + b"]\n")


def is_merged_folder(path: Path) -> bool:
    """A folder a folder merge wrote (so a later merge may replace it)."""
    mark = path / MERGED_MARK
    return path.is_dir() and not path.is_symlink() and mark.is_file() and not mark.is_symlink()


def merge_folder(outputs: list[Path], dest: Path) -> None:
    """A folder of the outputs under their own names (see [app] output_name), built beside `dest`
    and renamed into place; a folder an earlier folder merge wrote is replaced."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)
    tmp = dest.parent / f"{part_prefix(dest)}{secrets.token_hex(8)}{PART_SUFFIX}"
    tmp.mkdir(mode=0o777)
    locks = [locked_folder(tmp)]  # a killed merge's folders are unlocked: a later merge removes them
    old = None
    try:
        for path in outputs:
            target = tmp / path.name
            if path.name == MERGED_MARK:
                raise MergeError(f"an output is named {MERGED_MARK!r}, the folder merge's own mark; "
                                 "set [app] output_name to another name")
            if target.exists():
                raise MergeError(f"two outputs are named {path.name!r}; a folder merge needs one "
                                 "name per task ([app] output_name = '{stem}.out')")
            shutil.copyfile(path, target)
        (tmp / MERGED_MARK).write_text("written by shardrun's folder merge; a re-merge replaces "
                                       "this folder\n")
        if is_merged_folder(dest):
            locks.append(locked_folder(dest))
            old = dest.parent / f"{part_prefix(dest)}{secrets.token_hex(8)}{OLD_SUFFIX}"
            os.rename(dest, old)
        os.rename(tmp, dest)
    except BaseException:
        if old is not None and not dest.exists():
            os.rename(old, dest)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for fd in locks:
            os.close(fd)


BUILTIN: dict[str, Callable[[list[Path], Path], None]] = {
    "concat": merge_concat,
    "jsonl": merge_jsonl,
    "csv": merge_csv,
    "json": merge_json,
    "folder": merge_folder,
}


def merge_with_command(spec: JobSpec, outdir: Path, dest: Path) -> None:
    """Run the user's recombiner on a folder of outputs named in task order.

    With an {output} placeholder the command writes the result itself; without one, its standard
    output becomes the result (the classic `recombiner.py out/ > result` shape).
    """
    assert spec.merge.command is not None
    where = f"{spec.source}: [merge] command"
    writes_itself = any("{output}" in arg for arg in spec.merge.command)
    with atomic_path(dest) as tmp, tmp.open("wb") as out:
        argv = render_argv(spec.merge.command, {"outdir": str(outdir), "output": str(tmp)})
        try:
            code, err = run_program(argv, spec.base_dir, subprocess.DEVNULL if writes_itself else out)
        except FileNotFoundError:
            raise JobFileError(f"{where}: program {argv[0]!r} not found") from None
        if code != 0:
            raise MergeError(f"merger {' '.join(argv[:3])} exited {code}: {tail(err, 3)}")


def merge_outputs(spec: JobSpec, outputs: list[Path], outdir: Path, *,
                  home: Path | None = None) -> Path:
    """Merge the outputs (task order) into [merge] output. `outdir` is the folder that holds them.

    The destination is checked again (`check_output`): the job's inputs may have changed since the
    run was checked, and a `shardrun merge RUN` may come much later.
    """
    check_output(spec, home=home)
    dest = spec.path(spec.merge.output)
    kind = spec.merge.kind
    if kind == "command":
        merge_with_command(spec, outdir, dest)
    elif kind == "function":
        assert spec.merge.function is not None
        fn = load_callable(spec.merge.function, spec.base_dir, f"{spec.source}: [merge] function")
        with atomic_path(dest) as tmp:
            fn(outputs, tmp)
    else:
        BUILTIN[kind](outputs, dest)
    return dest
