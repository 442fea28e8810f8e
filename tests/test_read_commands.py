"""Read commands work from the ledger: status needs no storage secret, runs never cuts a run id, and
logs of a cleaned run says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.core.ledger import Ledger

from .helpers import write_job


def failing_job(tmp_path: Path) -> Path:
    (tmp_path / "big.txt").write_text("a\nb\n")
    return write_job(tmp_path, {
        "app": {"command": ["sh", "-c", 'echo "it broke on $(cat "$0")" >&2; exit 3', "{input}"]},
        "split": {"input": "big.txt"}, "merge": {"output": "r.txt"}, "run": {"retries": 0},
    })


def test_status_shows_the_stderr_tail_from_the_ledger_without_the_store(
        tmp_path: Path, shardrun_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(failing_job(tmp_path))]) == 1
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    # The store is gone (as if its account needed a secret this machine lacks): status still works.
    (shardrun_home / "store" / run_id).rename(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["status", run_id, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [f["stderr_tail"] for f in info["failed"]] == ["it broke on a", "it broke on b"]


def test_runs_never_cuts_a_run_id(tmp_path: Path, shardrun_home: Path) -> None:
    job = failing_job(tmp_path)
    job.write_text("[job]\nname = \"a-rather-long-job-name-for-a-narrow-terminal\"\n" + job.read_text())
    assert main(["run", "-q", str(job)]) == 1
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    shown = subprocess.run([sys.executable, "-m", "shardrun", "runs"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "60", "SHARDRUN_HOME": str(shardrun_home)},
                           check=True)
    assert run_id in shown.stdout


def test_logs_of_a_cleaned_run_says_it_was_cleaned(tmp_path: Path, shardrun_home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-q", str(failing_job(tmp_path))]) == 1
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    assert main(["cleanup", run_id]) == 0
    capsys.readouterr()
    assert main(["logs", run_id, "task-00001"]) == 2
    assert "was cleaned up" in capsys.readouterr().err
