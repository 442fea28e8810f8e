"""A worker's task folder, reused from one attempt to the next when the last one left it clean."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO


class Slot:
    """A worker's task folder, kept after a clean success and renamed for its next attempt: one
    rename instead of making and removing two folders and two log files per task (on ext4 each of
    those costs tens of microseconds of CPU and can wait a millisecond on the journal).

    Its empty log files stay open; an attempt that writes to one has it stored and gets a new one.
    """

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.logs: dict[str, BinaryIO] = {}

    def reusable(self) -> bool:
        """Nothing the attempt left behind: wd is empty and the task folder holds nothing else."""
        with os.scandir(self.dir / "wd") as wd:
            if next(wd, None) is not None:
                return False
        with os.scandir(self.dir) as entries:
            allowed = {"wd", *(f"{stream}.txt" for stream in self.logs)}
            return all(e.name in allowed for e in entries)

    def close(self) -> None:
        """Close the log files; those still open are empty, and are not kept."""
        for stream, f in self.logs.items():
            f.close()
            (self.dir / f"{stream}.txt").unlink(missing_ok=True)
        self.logs.clear()


def enter(slot: Slot | None, task_dir: Path, logs: tuple[str, ...]) -> Slot:
    """The attempt's folder, `task_dir` with an empty `wd`: the worker's kept slot renamed, or new."""
    if slot is not None:
        try:
            os.rename(slot.dir, task_dir)  # replaces an empty folder left by a dead client
        except OSError:
            shutil.rmtree(task_dir, ignore_errors=True)  # a full one: the dead client's attempt
            os.rename(slot.dir, task_dir)
        slot.dir = task_dir
    else:
        try:
            task_dir.mkdir()
        except FileExistsError:
            shutil.rmtree(task_dir)  # left by a client that died before recording this attempt
            task_dir.mkdir()
        (task_dir / "wd").mkdir()
        slot = Slot(task_dir)
    for stream in logs:
        if stream not in slot.logs:
            slot.logs[stream] = open(task_dir / f"{stream}.txt", "wb", buffering=0)  # noqa: SIM115
    return slot


def remove_task_dir(task_dir: Path) -> None:
    # After a success the folder is usually an empty wd: two rmdirs beat a tree walk.
    try:
        (task_dir / "wd").rmdir()
        task_dir.rmdir()
    except OSError:
        shutil.rmtree(task_dir, ignore_errors=True)
