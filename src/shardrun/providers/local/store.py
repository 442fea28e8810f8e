"""The default store: a folder on this machine. Writes are atomic (temp file, then rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from shardrun.core.filecopy import copy_file
from shardrun.core.layout import split_key
from shardrun.core.store import ObjectInfo

_PLAIN = frozenset(("", ".", ".."))  # no part of a key may be one of these


class LocalStore:
    name = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # A lexical check is enough (the store's folders are ours) and costs no system calls,
        # which matters at thousands of tasks.
        parts = key.split("/")
        if len(parts) < 2 or not _PLAIN.isdisjoint(parts):  # the usual key passes on one test
            split_key(key)
            raise ValueError(f"key {key!r} is not a plain relative path")
        return self.root / key

    def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Store a copy of `src`; with `move` (only ever shardrun's own files) a rename instead."""
        dest = self._path(key)
        if move:
            try:
                return _move(src, dest)
            except OSError:
                pass  # another filesystem: fall back to copy
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        os.close(fd)
        try:
            copy_file(src, tmp)  # never a link: a task or a later edit must not reach both sides
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if move:
            Path(src).unlink(missing_ok=True)
        return dest.stat().st_size

    def put_files(self, items: Sequence[tuple[str, Path]], *, move: bool = False) -> None:
        for key, src in items:
            self.put_file(key, src, move=move)

    def get_files(self, items: Sequence[tuple[str, Path]]) -> None:
        for key, dest in items:
            self.get_file(key, dest)

    def get_file(self, key: str, dest: Path) -> int:
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return copy_file(src, dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(key) from None

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names (`run/outputs/`), not the whole namespace:
        # a run's inputs and logs are thousands of folders the caller did not ask about.
        folder = prefix.rpartition("/")[0] or prefix  # a bare namespace names its folder
        if not folder or any(part in ("", ".", "..") for part in folder.split("/")):
            return
        found: list[ObjectInfo] = []
        _walk(os.path.join(self.root, folder), folder, prefix, found)
        yield from sorted(found, key=lambda o: o.key)

    def delete_namespace(self, namespace: str) -> bool:
        if not namespace or "/" in namespace or namespace in (".", ".."):
            raise ValueError(f"bad namespace {namespace!r}")
        path = self.root / namespace
        if not path.exists():
            return False
        shutil.rmtree(path)
        return True

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def _walk(path: str, rel: str, prefix: str, found: list[ObjectInfo]) -> None:
    """The files under `path` (the key folder `rel`) whose keys start with `prefix`, with their
    sizes, into `found`; as os.walk would list them (links to folders are not followed, other
    links are files), with one scandir per folder and one stat per file, and nothing else: a
    run's outputs are thousands of folders of one file each."""
    try:
        entries = os.scandir(path)
    except OSError:  # gone, or not a folder: nothing under it
        return
    folders = []
    with entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.is_symlink():
                    folders.append(entry)
                continue
            if entry.name.startswith(".part-"):
                continue
            key = f"{rel}/{entry.name}"
            if key.startswith(prefix):
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                found.append(ObjectInfo(key, size))
    for entry in folders:
        _walk(entry.path, f"{rel}/{entry.name}", prefix, found)


def _move(src: Path, dest: Path) -> int:
    """Rename into place. The folder is made first: shardrun's keys are new far more often than
    not, and a rename that fails for want of it costs more than a mkdir that finds it there."""
    size = os.stat(src).st_size
    try:
        os.mkdir(dest.parent)
    except FileExistsError:
        pass
    except FileNotFoundError:
        dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    return size
