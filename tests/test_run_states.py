"""Every run ends in a known state: a client stopped while splitting or merging, a merge that fails,
an output lost from the store, a task that fails before it starts."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from shardrun.core.ledger import Ledger
from shardrun.core.states import RunState

from .helpers import APPS, PY, write_job
from .test_resume import start_client

ROWS = 12
EXPECTED = "".join(f"row {i}\n" for i in range(ROWS))


def job_with(tmp_path: Path, *, split_sleep: Path | None = None, merge_sleep: Path | None = None,
             merge_breaks: Path | None = None) -> Path:
    """Rows copied by tests/apps/slow.py; the splitter and merger can be made slow or broken."""
    (tmp_path / "big.txt").write_text(EXPECTED)
    split: dict[str, object] = {"input": "big.txt", "per_task": 2}
    if split_sleep is not None:
        split["command"] = ["sh", "-c", 'sleep "$(cat "$0")"; split -l 2 -d -a 3 "$1" "$2/p"',
                            str(split_sleep), "{input}", "{outdir}"]
    merge: dict[str, object] = {"output": "result.txt"}
    if merge_sleep is not None or merge_breaks is not None:
        merge["command"] = ["sh", "-c", 'sleep "$(cat "$0")"; test ! -e "$1" && cat "$2"/*',
                            str(merge_sleep or "/dev/null"), str(merge_breaks or "/nonexistent"),
                            "{outdir}"]
    return write_job(tmp_path, {
        "app": {"command": [PY, str(APPS / "slow.py"), "{input}", "{output}"],
                "env": {"CALLS_LOG": str(tmp_path / "calls.log"), "SLEEP": "0"}},
        "split": split, "merge": merge, "run": {"concurrency": 2, "retries": 0},
    })


def shardrun(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shardrun", *args], capture_output=True, text=True,
                          env={**os.environ, "SHARDRUN_HOME": str(home)}, timeout=120, check=False)


def run_row(home: Path) -> tuple[str, str, str | None]:
    with sqlite3.connect(home / "ledger.sqlite", timeout=5) as db:
        row = db.execute("SELECT run_id, status, message FROM runs ORDER BY created_at DESC").fetchone()
    return str(row[0]), str(row[1]), row[2]


def wait_status(home: Path, client: subprocess.Popen[str], status: str) -> str:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert client.poll() is None, client.communicate()
        try:
            run_id, now, _ = run_row(home)
        except (sqlite3.OperationalError, TypeError):
            now, run_id = "", ""
        if now == status:
            # ... and into the slow step itself: its `sh` is the client's child. (A fixed pause was
            # not enough on a loaded machine: the client had not yet made the run's work folder.)
            assert _children_running(client.pid, "sh"), f"the {status} step never started"
            return run_id
        time.sleep(0.05)
    raise AssertionError(f"the run never reached {status}")


def test_a_client_killed_while_splitting_is_abandoned_by_the_next_run(
        tmp_path: Path, shardrun_home: Path) -> None:
    sleep = tmp_path / "sleep"
    sleep.write_text("30")
    job = job_with(tmp_path, split_sleep=sleep)
    client = start_client(job, {"SHARDRUN_HOME": str(shardrun_home)})
    stuck = wait_status(shardrun_home, client, "splitting")
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    assert (shardrun_home / "work" / stuck).exists()
    sleep.write_text("0")
    again = shardrun(shardrun_home, "run", str(job))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "result.txt").read_text() == EXPECTED
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    old = ledger.get_run(stuck)
    ledger.close()
    assert old is not None and old.status == RunState.FAILED and "splitting" in (old.message or "")
    assert not (shardrun_home / "work" / stuck).exists()


@pytest.mark.parametrize("phase", ["splitting", "merging"])
def test_sigterm_is_handled_like_ctrl_c_in_every_phase(tmp_path: Path, shardrun_home: Path,
                                                       phase: str) -> None:
    sleep = tmp_path / "sleep"
    sleep.write_text("30")
    job = (job_with(tmp_path, split_sleep=sleep) if phase == "splitting"
           else job_with(tmp_path, merge_sleep=sleep))
    client = start_client(job, {"SHARDRUN_HOME": str(shardrun_home)})
    run_id = wait_status(shardrun_home, client, phase)
    client.send_signal(signal.SIGTERM)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130, err
    assert "Traceback" not in err
    _, status, _ = run_row(shardrun_home)
    assert status == (RunState.FAILED if phase == "splitting" else RunState.INTERRUPTED)
    assert not list(tmp_path.glob(".result.txt.*"))  # no temp file left beside the result
    sleep.write_text("0")
    again = shardrun(shardrun_home, "run", str(job))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "result.txt").read_text() == EXPECTED
    if phase == "merging":
        assert f"resumed run {run_id}: succeeded" in again.stdout


def test_a_failed_merge_is_merge_failed_and_merge_retries_it(tmp_path: Path, shardrun_home: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("")
    job = job_with(tmp_path, merge_breaks=broken)
    first = shardrun(shardrun_home, "run", str(job))
    assert first.returncode == 3, first.stderr
    assert "the merge failed" in first.stderr and "shardrun merge" in first.stderr
    run_id, status, message = run_row(shardrun_home)
    assert status == RunState.MERGE_FAILED and "exited 1" in (message or "")
    again = shardrun(shardrun_home, "run", str(job))  # says what happened, tries again
    assert again.returncode == 3 and "merge failed" in again.stderr
    broken.unlink()
    merged = shardrun(shardrun_home, "merge", run_id)
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "result.txt").read_text() == EXPECTED
    assert run_row(shardrun_home)[1] == RunState.SUCCEEDED
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert sum(line.startswith("start") for line in calls) == ROWS // 2  # no task ran again


def test_cleanup_of_a_merge_failed_run_needs_no_force(tmp_path: Path, shardrun_home: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("")
    assert shardrun(shardrun_home, "run", str(job_with(tmp_path, merge_breaks=broken))).returncode == 3
    run_id, _, _ = run_row(shardrun_home)
    done = shardrun(shardrun_home, "cleanup", run_id)
    assert done.returncode == 0, done.stderr
    assert run_row(shardrun_home)[1] == RunState.CLEANED


def test_an_output_gone_from_the_store_is_reported_and_its_task_runs_again(
        tmp_path: Path, shardrun_home: Path) -> None:
    job = job_with(tmp_path)
    assert shardrun(shardrun_home, "run", str(job)).returncode == 0
    run_id, _, _ = run_row(shardrun_home)
    gone = next((shardrun_home / "store" / run_id / "outputs" / "task-00003").iterdir())
    gone.unlink()
    merged = shardrun(shardrun_home, "merge", run_id)
    assert merged.returncode == 3 and "Traceback" not in merged.stderr
    assert "task-00003" in merged.stderr and "gone from the store" in merged.stderr
    again = shardrun(shardrun_home, "run", str(job))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "result.txt").read_text() == EXPECTED
    starts = [line.split()[1] for line in (tmp_path / "calls.log").read_text().splitlines()
              if line.startswith("start")]
    assert starts.count("task-00003") == 2 and len(starts) == ROWS // 2 + 1


def test_a_task_that_fails_before_it_starts_records_why(tmp_path: Path, shardrun_home: Path) -> None:
    job = job_with(tmp_path)
    assert shardrun(shardrun_home, "run", str(job)).returncode == 0
    run_id, _, _ = run_row(shardrun_home)
    for piece in (shardrun_home / "store" / run_id / "inputs" / "task-00002").iterdir():
        piece.unlink()  # its input is gone: the attempt cannot start
    retried = shardrun(shardrun_home, "retry", run_id, "--task", "task-00002")
    assert retried.returncode == 1
    # its first attempt succeeded in the first run; the second could not start, and says why
    assert "task-00002 failed after 2 attempt(s): FileNotFoundError: " in retried.stdout
    assert "inputs/task-00002/" in retried.stdout and "unknown" not in retried.stdout
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    attempts = ledger.attempts(run_id, "task-00002")
    ledger.close()
    assert [(a["attempt"], a["result"]) for a in attempts] == [(1, "succeeded"), (2, "failed")]


def test_a_merger_does_not_outlive_a_client_killed_9(tmp_path: Path, shardrun_home: Path) -> None:
    sleep = tmp_path / "sleep"
    sleep.write_text("30")
    job = job_with(tmp_path, merge_sleep=sleep)
    client = start_client(job, {"SHARDRUN_HOME": str(shardrun_home)})
    wait_status(shardrun_home, client, "merging")
    merger = _children_running(client.pid, "sh")  # the merger itself, the client's child
    assert merger, "the merger should be running"
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    import time

    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in merger) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in merger)
    sleep.write_text("0")
    again = shardrun(shardrun_home, "run", str(job))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "result.txt").read_text() == EXPECTED
    assert not list(tmp_path.glob(".result.txt.*"))  # the killed merge's part file is gone too


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _children_running(parent: int, name: str) -> list[int]:
    """Children of `parent` whose command is `name`."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().split()
            except OSError:
                continue
            if fields[1] == f"({name})" and int(fields[3]) == parent:
                found.append(int(fields[0]))
        if found:
            return found
        time.sleep(0.05)
    return []
