"""A folder merge killed part way (SIGKILL: no cleanup runs) leaves its part folder, or the previous
merged folder moved aside, beside the output; the next merge of that output removes them, and never
one a merge still running holds."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shardrun.core.merge import MERGED_MARK, merge_folder

KILLED_MERGE = """
import shutil, sys, time
from pathlib import Path
from shardrun.core import merge
copy, ready, where = shutil.copyfile, Path(sys.argv[1]), sys.argv[2]
def slow_copy(src, dst):
    copy(src, dst)
    ready.write_text("copied")
    time.sleep(600)
def slow_rmtree(path, ignore_errors=False):
    ready.write_text("renamed")
    time.sleep(600)
if where == "copy":
    merge.shutil.copyfile = slow_copy
else:
    merge.shutil.rmtree = slow_rmtree
merge.merge_folder([Path(p) for p in sys.argv[3:]], Path(sys.argv[1]).parent / "merged")
"""


def outputs(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for name, text in (("a.out", "A"), ("b.out", "B")):
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


def kill_merge_at(where: str, tmp_path: Path, paths: list[Path]) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MERGE, str(ready), where, *map(str, paths)])
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, "the merge ended before it was killed"
        assert time.monotonic() < deadline, "the merge never got to the point to kill it"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ready.unlink()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".shardrun-" in p.name)


def test_a_killed_folder_merge_leaves_nothing_after_the_next_one(tmp_path: Path) -> None:
    paths = outputs(tmp_path / "outs")
    kill_merge_at("copy", tmp_path, paths)  # killed while filling its part folder
    assert len(leftovers(tmp_path)) == 1 and not (tmp_path / "merged").exists()
    merge_folder(paths, tmp_path / "merged")
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == [MERGED_MARK, "a.out", "b.out"]
    kill_merge_at("rmtree", tmp_path, paths)  # killed after the swap, before the old folder went
    assert len(leftovers(tmp_path)) == 1 and (tmp_path / "merged" / "a.out").read_text() == "A"
    merge_folder(paths, tmp_path / "merged")
    assert leftovers(tmp_path) == []


def test_a_part_folder_a_live_merge_holds_is_kept(tmp_path: Path) -> None:
    paths = outputs(tmp_path / "outs")
    live = tmp_path / f".merged.{'0' * 16}.shardrun-part"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        merge_folder(paths, tmp_path / "merged")
        assert live.is_dir()
    finally:
        os.close(fd)
    merge_folder(paths, tmp_path / "merged")
    assert not live.exists()
