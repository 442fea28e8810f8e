"""A [split] or [merge] command runs in a process group of its own, and nothing it started outlives
it: a background process left by the command is killed when the command ends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import shardrun

from .helpers import write_job

# Starts a child that would write `late` a minute later, writes its pid, and exits at once.
LEAVES_A_CHILD = '(sleep 60; echo late > "$1.late") & echo $! > "$1.pid"'


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie waiting for init to reap it counts as ended)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("where", ["split", "merge"])
def test_what_a_command_starts_in_the_background_is_killed_when_it_ends(
        tmp_path: Path, shardrun_home: Path, where: str) -> None:
    marker = tmp_path / "bg"
    (tmp_path / "in.txt").write_text("a\nb\n")
    split = {"input": "in.txt", "per_task": 1}
    merge: dict[str, object] = {"method": "concat", "output": "out.txt"}
    if where == "split":
        split = {"input": "in.txt", "command": [
            "/bin/sh", "-c", LEAVES_A_CHILD + '; cp "$2" "$3/piece.txt"', "sh", str(marker), "{input}",
            "{outdir}"]}
    else:
        merge = {"output": "out.txt", "command": [
            "/bin/sh", "-c", LEAVES_A_CHILD + '; cat "$2"/*', "sh", str(marker), "{outdir}"]}
    job = write_job(tmp_path, {"app": {"command": ["cat", "{input}"], "stdout": "output"},
                               "split": split, "merge": merge})
    outcome = shardrun.run_job(job)
    assert outcome.ok, outcome
    assert (tmp_path / "out.txt").read_text() == "a\nb\n"
    pid = int(Path(f"{marker}.pid").read_text())
    assert gone(pid), f"the {where} command's background process {pid} is still running"
    assert not Path(f"{marker}.late").exists()
    if not gone(pid):  # pragma: no cover - keep a failing run from leaving it behind
        os.kill(pid, 9)
