"""Writing beside the user's merged output, atomically: a part file (or folder) next to the
destination replaces it only when complete. Each part is locked while it is written, so a later
merge can tell what a killed one left (unlocked: removed) from what a live one is writing (kept).
Only names made here are ever removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PART_SUFFIX = ".shardrun-part"
OLD_SUFFIX = ".shardrun-old"  # a folder merge's previous folder, until the new one is in place


def part_prefix(dest: Path) -> str:
    # Long names would overflow the 255-byte limit once the random part is added: hash them.
    name = dest.name if len(os.fsencode(dest.name)) <= 200 else hashlib.sha256(
        os.fsencode(dest.name)).hexdigest()[:32]
    return f".{name}."


def remove_stale_parts(dest: Path) -> None:
    """Remove what a killed merge of `dest` left: part files, and a folder merge's part and old
    folders. Only names this module makes are touched, and only when no merge holds their lock (a
    merge still running keeps its own)."""
    pattern = re.compile(re.escape(part_prefix(dest)) + r"[0-9a-f]{16}"
                         + f"(?:{re.escape(PART_SUFFIX)}|{re.escape(OLD_SUFFIX)})")
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        folder = entry.is_dir(follow_symlinks=False)
        if not folder and not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if folder else 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if folder:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass  # locked: a merge is writing it
        finally:
            os.close(fd)


def locked_folder(path: Path) -> int:
    """A descriptor holding the lock of a folder (the lock follows the folder when renamed)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _locked_part(dest: Path) -> tuple[Path, int]:
    """A new part file beside `dest`, created and locked. Another merge's _remove_stale_parts may
    lock and remove it between its creation and our lock: then it is gone, and we make another."""
    while True:
        tmp = dest.parent / f"{part_prefix(dest)}{secrets.token_hex(8)}{PART_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(tmp, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return tmp, fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest` that replaces `dest` only if the block succeeds.

    The file is created with mode 0666 so the user's umask decides its permissions, as it would for
    any file the user's programs write. It stays locked while the block runs.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)
    tmp, fd = _locked_part(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


@contextmanager
def atomic_file(dest: Path) -> Iterator[IO[bytes]]:
    with atomic_path(dest) as tmp, tmp.open("wb") as f:
        yield f
