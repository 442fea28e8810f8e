"""Fixing the job file fixes the run: retry, merge and resume use its current [run] and [merge];
and a failure no retry can help (a program not found) is not retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.core.ledger import Ledger

from .helpers import APPS, PY, write_job


def sleepy_job(tmp_path: Path, timeout: str, merge: dict[str, object] | None = None) -> Path:
    (tmp_path / "big.txt").write_text("".join(f"row {i}\n" for i in range(4)))
    return write_job(tmp_path, {
        "app": {"command": [PY, str(APPS / "slow.py"), "{input}", "{output}"],
                "env": {"CALLS_LOG": str(tmp_path / "calls.log"), "SLEEP": "0.5"}},
        "split": {"input": "big.txt", "per_task": 2},
        "merge": merge or {"output": "result.txt"},
        "run": {"concurrency": 2, "retries": 0, "timeout": timeout},
    })


def test_retry_uses_the_timeout_the_job_file_has_now(tmp_path: Path, shardrun_home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    job = sleepy_job(tmp_path, "50ms")
    assert main(["run", str(job)]) == 1
    out = capsys.readouterr().out
    assert "timed out after 0.05s" in out
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    job.write_text(job.read_text().replace('timeout = "50ms"', 'timeout = "5m"'))
    assert main(["retry", run_id, "--failed"]) == 0, capsys.readouterr()
    said = capsys.readouterr()
    assert "uses the job file's current [run] timeout" in said.err
    assert (tmp_path / "result.txt").read_text() == "".join(f"row {i}\n" for i in range(4))


def test_merge_uses_the_merger_the_job_file_has_now(tmp_path: Path, shardrun_home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    job = sleepy_job(tmp_path, "5m")
    assert main(["run", str(job)]) == 0
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    job.write_text(job.read_text().replace('output = "result.txt"',
                                           'output = "reversed.txt"\ncommand = ["sh", "-c", '
                                           '"cat \\"$0\\"/* | sort -r", "{outdir}"]'))
    capsys.readouterr()
    assert main(["merge", run_id]) == 0
    assert "uses the job file's current [merge]" in capsys.readouterr().err
    assert (tmp_path / "reversed.txt").read_text() == "".join(f"row {i}\n" for i in (3, 2, 1, 0))


def test_an_edit_of_the_app_does_not_apply_to_an_existing_run(tmp_path: Path, shardrun_home: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    job = sleepy_job(tmp_path, "50ms")
    assert main(["run", str(job)]) == 1
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id
    edited = job.read_text().replace('SLEEP = "0.5"', 'SLEEP = "0"')
    assert edited != job.read_text()
    job.write_text(edited)  # the app's environment: part of [app], so not for this run
    capsys.readouterr()
    assert main(["retry", run_id, "--failed"]) == 1  # still the old app environment and timeout
    assert "[app]" not in capsys.readouterr().err


@pytest.mark.parametrize("command", [["sh", "-c", "no-such-program-here {input}"],
                                     ["sh", "-c", "exec ./not-executable.txt"]])
def test_a_program_that_cannot_be_found_or_run_fails_at_once(tmp_path: Path, shardrun_home: Path,
                                                              command: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "big.txt").write_text("a\nb\n")
    (tmp_path / "not-executable.txt").write_text("x")
    job = write_job(tmp_path, {"app": {"command": command}, "split": {"input": "big.txt"},
                               "merge": {"output": "r.txt"}, "run": {"retries": 3}})
    assert main(["run", str(job)]) == 1
    out = capsys.readouterr().out
    assert "failed after 1 attempt(s): exit code 12" in out and "not retried" in out
    attempts = Ledger(shardrun_home / "ledger.sqlite").attempts(
        Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id)
    assert len(attempts) == 2  # one per task, none retried


def test_validate_checks_the_script_an_interpreter_runs(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "big.txt").write_text("a\n")
    job = write_job(tmp_path, {"app": {"command": ["python3", "myapp.py", "{input}", "{output}"]},
                               "split": {"input": "big.txt"}, "merge": {"output": "r.txt"}})
    assert main(["validate", str(job)]) == 2
    assert "[app] command[1]: script 'myapp.py' does not exist" in capsys.readouterr().err
    (tmp_path / "myapp.py").write_text("print()\n")
    assert main(["validate", str(job)]) == 0
