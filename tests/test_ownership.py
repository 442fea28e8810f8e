"""One owner per run: a second client on the same job or run says who owns it, and never runs a task
twice; the lock goes with the client however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shardrun.core.errors import ShardrunError
from shardrun.core.owner import RunBusy, holding, job_lock, run_lock

from .test_resume import processes_of, slow_job, start_client, wait_for


def starts_in(calls: Path) -> Counter[str]:
    return Counter(line.split()[1] for line in calls.read_text().splitlines() if line.startswith("start"))


def test_a_held_lock_names_its_owner_and_is_released_on_exit(tmp_path: Path) -> None:
    with holding(run_lock(tmp_path, "job-261130-abcdef"), run_id="job-261130-abcdef"):
        with pytest.raises(RunBusy) as err:
            run_lock(tmp_path, "job-261130-abcdef").acquire()
        assert f"run job-261130-abcdef is being worked on by PID {os.getpid()} on " in str(err.value)
        assert isinstance(err.value, ShardrunError) and err.value.exit_code == 3
    lock = run_lock(tmp_path, "job-261130-abcdef")
    lock.acquire()  # free again
    lock.release()


def test_a_killed_owner_needs_no_unlock(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from shardrun.core.owner import job_lock;"
            "job_lock(Path(sys.argv[1]), 'j').acquire(run_id='r1'); print('held', flush=True);"
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(RunBusy, match=f"run r1 is being worked on by PID {holder.pid}"):
        job_lock(tmp_path, "j").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    lock = job_lock(tmp_path, "j")
    lock.acquire()  # the kernel released it with the process
    lock.release()


@pytest.mark.parametrize("trial", range(3))
def test_two_first_starts_make_one_run_and_each_task_runs_once(
        tmp_path: Path, shardrun_home: Path, trial: int) -> None:
    calls, hold = tmp_path / "calls.log", tmp_path / "hold"
    hold.touch()  # the owner's tasks wait until the other client has given up, however late it starts
    job = slow_job(tmp_path, 12, "0.2", calls, hold)
    env = {"SHARDRUN_HOME": str(shardrun_home)}
    first, second = start_client(job, env), start_client(job, env)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hold.unlink()
    outs = [c.communicate(timeout=120) for c in (first, second)]
    codes = sorted(c.returncode for c in (first, second))
    assert codes == [0, 3], outs
    loser = outs[[first.returncode, second.returncode].index(3)]
    assert "is being worked on by PID" in loser[1] and "Traceback" not in loser[1]
    assert (tmp_path / "result.txt").read_text() == "".join(f"row {i}\n" for i in range(12))
    assert set(starts_in(calls).values()) == {1} and len(starts_in(calls)) == 12
    runs = subprocess.run([sys.executable, "-m", "shardrun", "runs", "--json"], capture_output=True,
                          text=True, env={**os.environ, **env}, check=True)
    assert runs.stdout.count('"run_id"') == 1


def test_a_second_client_on_an_interrupted_run_is_turned_away_and_nothing_runs_twice(
        tmp_path: Path, shardrun_home: Path) -> None:
    calls, hold = tmp_path / "calls.log", tmp_path / "hold"
    job = slow_job(tmp_path, 40, "0.1", calls, hold)
    env = {"SHARDRUN_HOME": str(shardrun_home)}
    client = start_client(job, env)
    wait_for(shardrun_home, "SELECT COUNT(*) FROM tasks WHERE state='succeeded'", 8, client)
    hold.touch()  # tasks started from now on wait: the run cannot finish before the Ctrl-C lands
    client.send_signal(signal.SIGINT)
    client.communicate(timeout=60)
    done_before = _succeeded(shardrun_home)
    assert len(done_before) < 40
    # The resumer's tasks wait too, so it is still at work (and owns the run) while the others knock.
    resumer = start_client(job, env)
    try:
        wait_for(shardrun_home, "SELECT COUNT(*) FROM attempts WHERE result='running'", 1, resumer)
        intruder = subprocess.run([sys.executable, "-m", "shardrun", "run", str(job)],
                                  capture_output=True, text=True, env={**os.environ, **env}, timeout=60,
                                  check=False)
        retry = subprocess.run([sys.executable, "-m", "shardrun", "cleanup", "--force",
                                _run_id(shardrun_home)], capture_output=True, text=True,
                               env={**os.environ, **env}, timeout=60, check=False)
    finally:
        hold.unlink()
    _, err = resumer.communicate(timeout=120)
    assert resumer.returncode == 0, err
    for other in (intruder, retry):
        assert other.returncode == 3, other.stderr
        assert f"run {_run_id(shardrun_home)} is being worked on by PID {resumer.pid}" in other.stderr
    assert (tmp_path / "result.txt").read_text() == "".join(f"row {i}\n" for i in range(40))
    starts = starts_in(calls)
    assert len(done_before) >= 8 and all(starts[t] == 1 for t in done_before)
    assert sorted(starts) == [f"task-{n:05d}" for n in range(1, 41)]


def test_wait_takes_the_run_once_the_owner_is_done(tmp_path: Path, shardrun_home: Path) -> None:
    calls, sleep = tmp_path / "calls.log", tmp_path / "sleep"
    sleep.write_text("30")  # the owner's tasks wait until the waiter is seen waiting
    job = slow_job(tmp_path, 6, str(sleep), calls)
    env = {"SHARDRUN_HOME": str(shardrun_home)}
    first = start_client(job, env)
    wait_for(shardrun_home, "SELECT COUNT(*) FROM runs", 1, first)
    waiter = subprocess.Popen([sys.executable, "-m", "shardrun", "run", "--wait", str(job)],
                              env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert waiter.stderr is not None
    said = waiter.stderr.readline()
    assert "waiting: run " in said and f"PID {first.pid}" in said
    sleep.write_text("0")
    for pid in processes_of(f"SHARDRUN_RUN_ID={_run_id(shardrun_home)}".encode()):
        os.kill(pid, signal.SIGTERM)  # cut the owner's 30 s naps short: the tasks fail, the run ends
    first.wait(timeout=60)
    out, err = waiter.communicate(timeout=120)
    # The waiter reports the run it waited for, which is over: it starts nothing of its own.
    assert waiter.returncode == first.returncode, err
    assert f"run {_run_id(shardrun_home)}" in out
    assert len(starts_in(calls)) <= 6 and set(starts_in(calls).values()) == {1}


def _run_id(home: Path) -> str:
    import sqlite3

    with sqlite3.connect(home / "ledger.sqlite") as db:
        return str(db.execute("SELECT run_id FROM runs").fetchone()[0])


def _succeeded(home: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(home / "ledger.sqlite") as db:
        return {r[0] for r in db.execute("SELECT task_id FROM tasks WHERE state='succeeded'")}
