"""Copies of the user's files. shardrun never links or moves a file it did not create: a link would
let a task (or a later edit) change what a run stored, and a move would take the user's file away.

A copy is cheap where the filesystem allows: a reflink (btrfs, XFS, overlayfs on those) shares the
blocks until one side changes; else `copy_file_range` copies inside the kernel; else a plain copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h: make dest share src's blocks
CHUNK = 1 << 20
# The kernel or filesystem cannot do this one: fall back, it is not an error.
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                errno.EBADF, errno.EPERM, errno.ETXTBSY}
_NO_CLONE: set[int] = set()  # devices that said they cannot reflink: not asked again per file


def copy_file(src: Path | str, dest: Path | str) -> int:
    """Copy the bytes of `src` to `dest` (created with mode 0666 & ~umask, or truncated) and
    return the size."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fin)
        fout = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            if _clone(fin, fout, info.st_dev):
                return info.st_size
            copied = _copy_in_kernel(fin, fout, info.st_size)
            return copied if copied is not None else _copy_plain(fin, fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _clone(fin: int, fout: int, device: int) -> bool:
    if device in _NO_CLONE:
        return False
    try:
        fcntl.ioctl(fout, FICLONE, fin)
    except OSError as err:
        if err.errno not in _UNSUPPORTED:
            raise
        if err.errno != errno.EXDEV:  # EXDEV is about this pair; the others about the filesystem
            _NO_CLONE.add(device)
        return False
    return True


def _copy_in_kernel(fin: int, fout: int, size: int) -> int | None:
    """copy_file_range until EOF; None (nothing written) when this pair of files cannot use it."""
    copied = 0
    while True:
        try:
            n = os.copy_file_range(fin, fout, max(size - copied, CHUNK))
        except OSError as err:
            if copied == 0 and err.errno in _UNSUPPORTED:
                return None
            raise
        if n == 0:
            # Nothing at all: maybe a file whose size the kernel does not know (procfs); the plain
            # copy reads it to its real end.
            return copied if copied else None
        copied += n


def _copy_plain(fin: int, fout: int) -> int:
    copied = 0
    while block := os.read(fin, CHUNK):
        view = memoryview(block)
        while view:
            written = os.write(fout, view)
            view = view[written:]
        copied += len(block)
    return copied
