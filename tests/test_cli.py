"""The CLI: exit codes, one-line errors with no traceback, and the commands over a real run."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from shardrun.cli import main
from shardrun.core.ledger import Ledger

from .helpers import PY, lines_job, write_job


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shardrun", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def into_closed_pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run shardrun with its stdout a pipe whose reading end is already closed."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "shardrun", *args], stdout=write,
                              stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(write)


def test_demo_style_run_and_the_read_commands(tmp_path: Path, shardrun_home: Path) -> None:
    job = lines_job(tmp_path, 50, 10)
    proc = cli("run", str(job))
    assert proc.returncode == 0, proc.stderr
    assert f"merged result: {tmp_path / 'result.txt'}" in proc.stdout
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    status = json.loads(cli("status", run_id, "--json").stdout)
    assert status["tasks"]["succeeded"] == 5
    assert run_id in cli("runs").stdout
    assert cli("logs", run_id, "task-00001", "--stdout").returncode == 0
    quiet = cli("logs", run_id, "task-00001")  # an empty stderr is not stored, yet reads as empty
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    never = cli("logs", run_id, "task-00001", "--attempt", "7")
    assert never.returncode == 2 and "no stderr stored for task-00001 attempt 7" in never.stderr
    merged = cli("merge", run_id)
    assert merged.returncode == 0 and "merged result" in merged.stdout
    # `shardrun status RUN --json | head`: the reader is gone before we write; no noise, exit 0
    for args in (["status", run_id, "--json"], ["runs"]):
        closed = into_closed_pipe(*args)
        assert (closed.returncode, closed.stderr) == (0, b""), closed
    assert "removed" in cli("cleanup", run_id).stdout


def test_failed_tasks_exit_1_with_summary(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("a\nb\n")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", "import sys; sys.exit('boom: disk on fire')", "{input}"]},
        "split": {"input": "big.txt"},
        "merge": {"output": "r.txt"},
        "run": {"retries": 0},
    })
    proc = cli("run", str(job))
    assert proc.returncode == 1
    assert "task-00001 failed after 1 attempt(s): exit code 1" in proc.stdout
    assert "stderr: boom: disk on fire" in proc.stdout
    assert "full log: shardrun logs" in proc.stdout
    assert "shardrun retry" in proc.stdout and "--failed" in proc.stdout


BAD_JOBS = {
    "unknown key": ({"app": {"command": ["cat"], "comand": 1}, "split": {"input": "x"},
                     "merge": {"output": "o"}}, "unknown key 'comand' in [app]"),
    "missing input": ({"app": {"command": ["cat"]}, "split": {"input": "nope.txt"},
                       "merge": {"output": "o"}}, "[split] input 'nope.txt' does not exist"),
    "missing app": ({"app": {"command": ["no-such-app-xyz", "{input}"]}, "split": {"input": "big.txt"},
                     "merge": {"output": "o"}}, "program 'no-such-app-xyz' not found"),
    "empty input": ({"app": {"command": ["cat"]}, "split": {"input": "empty.txt"},
                     "merge": {"output": "o"}}, "made no pieces from 'empty.txt'"),
    "config missing": ({"app": {"command": ["cat", "{config}"]}, "split": {"input": "big.txt"},
                        "merge": {"output": "o"}}, "uses {config} but [app] config is not set"),
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_job_files_exit_2_with_one_line(tmp_path: Path, shardrun_home: Path, case: str) -> None:
    (tmp_path / "big.txt").write_text("x\n")
    (tmp_path / "empty.txt").write_text("")
    sections, expected = BAD_JOBS[case]
    job = write_job(tmp_path, sections)
    proc = cli("run", str(job))
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shardrun: error: ")
    assert expected in lines[0]
    assert str(job) in lines[0]
    # the ledger holds no half-made run: either none, or one marked failed with nothing stored
    db = Ledger(shardrun_home / "ledger.sqlite")
    assert all(r.status == "failed" for r in db.runs())
    assert not any((shardrun_home / "store").glob("*/inputs")) if (shardrun_home / "store").exists() else True


def test_malformed_toml_exit_2(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text("[app\ncommand = 1\n")
    proc = cli("validate", str(tmp_path / "job.toml"))
    assert proc.returncode == 2
    assert "job.toml: not valid TOML" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_run_and_usage_errors(tmp_path: Path) -> None:
    assert main(["status", "no-such-run"]) == 2
    assert main(["retry", "no-such-run"]) == 2  # neither --failed nor --task
    assert main(["logs", "no-such-run", "task-00001"]) == 2


def test_init_then_validate_and_split(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "job.toml")]) == 0
    assert main(["init", str(tmp_path / "job.toml")]) == 2  # refuses to overwrite
    (tmp_path / "app.py").write_text("")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "big.txt").write_text("".join(f"{i}\n" for i in range(250)))
    assert main(["validate", str(tmp_path / "job.toml")]) == 0
    assert main(["split", str(tmp_path / "job.toml"), "-o", str(tmp_path / "pieces")]) == 0
    pieces = sorted((tmp_path / "pieces").iterdir())
    assert [len(p.read_text().splitlines()) for p in pieces] == [100, 100, 50]


# -- the edge: every exception ends in main() as one line and an exit code --------------------------
def _raises(err: Exception) -> Callable[..., NoReturn]:
    def broken(*args: object, **kwargs: object) -> NoReturn:
        raise err
    return broken


def test_an_unexpected_error_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SHARDRUN_DEBUG", raising=False)
    monkeypatch.setattr("shardrun.core.status.list_runs",
                        _raises(RuntimeError("GET https://acct/c/b?sv=1&sig=SeCrEt123 went wrong\nmore")))
    assert main(["runs"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "shardrun: internal error: RuntimeError: GET https://acct/c/b?sv=1&sig=REDACTED went wrong",
        "run with --debug (or SHARDRUN_DEBUG=1) to see the traceback",
    ]
    assert "Traceback" not in err and "SeCrEt123" not in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SHARDRUN_DEBUG", raising=False)
    monkeypatch.setattr("shardrun.core.status.list_runs", _raises(ZeroDivisionError("division by zero")))
    assert main(["--debug", "runs"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in broken" in err
    assert err.splitlines()[-1] == "shardrun: internal error: ZeroDivisionError: division by zero"
    monkeypatch.setenv("SHARDRUN_DEBUG", "1")
    assert main(["runs"]) == 3
    assert "Traceback (most recent call last):" in capsys.readouterr().err
    monkeypatch.setenv("SHARDRUN_DEBUG", "0")
    assert main(["runs"]) == 3
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("err", "line"), [
    (OSError(errno.ENOSPC, "No space left on device", "/data/scratch/piece-7"),
     "shardrun: error: No space left on device: /data/scratch/piece-7"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out.txt"),
     "shardrun: error: Permission denied: /data/out.txt"),
    (sqlite3.OperationalError("database is locked"),
     "shardrun: error: the ledger database: database is locked"),
])
def test_disk_and_ledger_errors_are_one_clear_line(err: Exception, line: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SHARDRUN_DEBUG", raising=False)
    monkeypatch.setattr("shardrun.core.status.run_status", _raises(err))
    assert main(["status", "some-run"]) == 3
    assert capsys.readouterr().err.splitlines() == [line]
