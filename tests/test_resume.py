"""A client killed with kill -9, or stopped with Ctrl-C, resumes without rerunning finished tasks."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .helpers import APPS, PY, write_job


def start_client(job: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "shardrun", "run", str(job)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(home: Path, sql: str, at_least: int, client: subprocess.Popen[str], limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert client.poll() is None, client.communicate()
        try:
            with sqlite3.connect(home / "ledger.sqlite", timeout=5) as db:
                if db.execute(sql).fetchone()[0] >= at_least:
                    return
        except sqlite3.OperationalError:
            pass  # the ledger is not created yet
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {sql} >= {at_least}")


def processes_of(run_marker: bytes) -> list[int]:
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if run_marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def slow_job(tmp_path: Path, n: int, sleep: str, calls: Path, hold: Path | None = None) -> Path:
    """`n` one-row tasks of tests/apps/slow.py; while the file `hold` exists, started tasks wait."""
    (tmp_path / "big.txt").write_text("".join(f"row {i}\n" for i in range(n)))
    env = {"CALLS_LOG": str(calls), "SLEEP": sleep, **({"HOLD": str(hold)} if hold else {})}
    return write_job(tmp_path, {
        "app": {"command": [PY, str(APPS / "slow.py"), "{input}", "{output}"], "env": env},
        "split": {"input": "big.txt", "per_task": 1},
        "merge": {"output": "result.txt"},
        "run": {"concurrency": 4, "retries": 0},
    })


def test_kill_9_halfway_then_run_again_finishes_without_rerunning(tmp_path: Path,
                                                                   shardrun_home: Path) -> None:
    calls = tmp_path / "calls.log"
    job = slow_job(tmp_path, 200, "0.05", calls)
    env = {"SHARDRUN_HOME": str(shardrun_home)}
    client = start_client(job, env)
    wait_for(shardrun_home, "SELECT COUNT(*) FROM tasks WHERE state='succeeded'", 80, client)
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)

    with sqlite3.connect(shardrun_home / "ledger.sqlite") as db:
        run_id = db.execute("SELECT run_id FROM runs").fetchone()[0]
        done_before = {r[0] for r in db.execute("SELECT task_id FROM tasks WHERE state='succeeded'")}
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "running"
    assert 80 <= len(done_before) < 200

    again = subprocess.run([sys.executable, "-m", "shardrun", "run", str(job)], capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert f"resumed run {run_id}: succeeded" in again.stdout

    starts = Counter(line.split()[1] for line in calls.read_text().splitlines() if line.startswith("start"))
    assert all(starts[t] == 1 for t in done_before), {t: starts[t] for t in done_before if starts[t] != 1}
    assert set(starts) == {f"task-{i:05d}" for i in range(1, 201)}
    # every output exactly once, in task order
    assert (tmp_path / "result.txt").read_text() == "".join(f"row {i}\n" for i in range(200))
    outputs = list((shardrun_home / "store" / run_id / "outputs").rglob("*"))
    assert len([p for p in outputs if p.is_file()]) == 200
    assert processes_of(f"SHARDRUN_RUN_ID={run_id}".encode()) == []
    # The ledger, written a batch per transaction, lost no attempt and counted none twice: each
    # task's attempts are 1..n, every one ended, the others lost to the kill; the last succeeded,
    # or was lost after it stored its output (recover trusts the output: the task did not rerun).
    with sqlite3.connect(shardrun_home / "ledger.sqlite") as db:
        rows = db.execute("SELECT task_id, attempt, result FROM attempts WHERE run_id=?"
                          " ORDER BY task_id, attempt", (run_id,)).fetchall()
        counted = dict(db.execute("SELECT task_id, attempts FROM tasks WHERE run_id=?", (run_id,)))
    by_task: dict[str, list[tuple[int, str]]] = {}
    for task, attempt, result in rows:
        by_task.setdefault(task, []).append((attempt, result))
    assert set(by_task) == set(counted)
    for task, attempts in by_task.items():
        assert [a for a, _ in attempts] == list(range(1, len(attempts) + 1)) == \
            list(range(1, counted[task] + 1)), (task, attempts)
        assert attempts[-1][1] == "succeeded" or (attempts[-1][1] == "lost" and starts[task] == 1), \
            (task, attempts)
        assert all(r == "lost" for _, r in attempts[:-1]), (task, attempts)
    assert sum(len(a) > 1 for a in by_task.values()) <= 4  # at most one in flight per worker


def test_ctrl_c_stops_running_tasks_and_the_run_resumes(tmp_path: Path, shardrun_home: Path) -> None:
    calls = tmp_path / "calls.log"
    sleep = tmp_path / "sleep-seconds"
    sleep.write_text("30")
    job = slow_job(tmp_path, 6, str(sleep), calls)
    env = {"SHARDRUN_HOME": str(shardrun_home)}
    client = start_client(job, env)
    wait_for(shardrun_home, "SELECT COUNT(*) FROM attempts WHERE result='running'", 4, client)
    deadline = time.monotonic() + 60  # and the apps themselves are up (Python takes a moment)
    while time.monotonic() < deadline and (
            not calls.exists() or calls.read_text().count("start") < 4):
        time.sleep(0.05)
    assert calls.read_text().count("start") == 4
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=60)
    assert client.returncode == 130, err
    assert "Resume with: shardrun run" in err and "Traceback" not in err

    with sqlite3.connect(shardrun_home / "ledger.sqlite") as db:
        run_id, status = db.execute("SELECT run_id, status FROM runs").fetchone()
        results = Counter(r[0] for r in db.execute("SELECT result FROM attempts"))
        states = Counter(r[0] for r in db.execute("SELECT state FROM tasks"))
    assert status == "interrupted"
    assert results == {"interrupted": 4}
    assert states == {"pending": 6}
    assert processes_of(f"SHARDRUN_RUN_ID={run_id}".encode()) == []
    assert "end" not in calls.read_text()

    sleep.write_text("0")  # the same job file, quicker tasks
    again = subprocess.run([sys.executable, "-m", "shardrun", "run", str(job)], capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert f"resumed run {run_id}" in again.stdout
    assert (tmp_path / "result.txt").read_text() == "".join(f"row {i}\n" for i in range(6))
