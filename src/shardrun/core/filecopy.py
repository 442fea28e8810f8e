"""Copies of the user's files. shardrun never links or moves a file it did not create: a link would
let a task (or a later edit) change what a run stored, and a move would take the user's file away.

A copy is cheap where the filesystem allows: a reflink (btrfs, XFS, overlayfs on those) shares the
blocks until one side changes; else `copy_file_range` copies inside the kernel; else a plain copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h: make dest share src's blocks
CHUNK = 1 << 20
# The kernel or filesystem cannot do this one: fall back, it is not an error.
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                errno.EBADF, errno.EPERM, errno.ETXTBSY}


def copy_file(src: Path | str, dest: Path | str) -> int:
    """Copy the bytes of `src` to `dest` (created or truncated) and return the size."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        if not (_clone(fin, fout) or _copy_in_kernel(fin, fout, size)):
            shutil.copyfileobj(fin, fout, CHUNK)
        fout.flush()
        return os.fstat(fout.fileno()).st_size


def _clone(fin: IO[bytes], fout: IO[bytes]) -> bool:
    try:
        fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            return False
        raise
    return True


def _copy_in_kernel(fin: IO[bytes], fout: IO[bytes], size: int) -> bool:
    """copy_file_range until EOF; False (nothing written) when this pair of files cannot use it."""
    copied = 0
    while True:
        try:
            n = os.copy_file_range(fin.fileno(), fout.fileno(), max(size - copied, CHUNK))
        except OSError as err:
            if copied == 0 and err.errno in _UNSUPPORTED:
                return False
            raise
        if n == 0:
            # Nothing at all: maybe a file whose size the kernel does not know (procfs); the plain
            # copy reads it to its real end.
            return copied > 0
        copied += n
