"""The planner's start-up and per-task overhead, calibrated from runs the ledger recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.core.spec import load_spec
from shardrun.core.workspace import Workspace
from shardrun.planning.calibrate import calibrate, slot_gaps
from shardrun.planning.workload import Workload
from shardrun.providers.azure import BATCH

from .ledger_records import Attempt, batch_job, local_job, record_run, write_toml

# 7 tasks of 4 lines (the last holds what is left) on 2 nodes of 2 slots. Node a takes its first task
# 60 s after the run starts, node b 80 s: start-up is the median, 70 s. Each task runs 10 s, and
# the next on the same slot starts 1 s after: 1 s between tasks. The app takes 1 s + 2 s a line
# here, 9 s for 4 lines: 1 s more in each attempt. Overhead: 1 + 1 = 2 s.
REHEARSAL = [
    Attempt(1, 1, "tvm-a", 60.0, 70.0), Attempt(2, 1, "tvm-a", 60.5, 70.5),
    Attempt(3, 1, "tvm-b", 80.0, 90.0), Attempt(4, 1, "tvm-b", 80.0, 90.0),
    Attempt(5, 1, "tvm-a", 71.0, 81.0), Attempt(6, 1, "tvm-a", 71.5, 81.5),
    Attempt(7, 1, "tvm-b", 91.0, 94.0),
    Attempt(1, 2, "tvm-b", 85.0, 5000.0, result="lost"),  # its end is when a later client looked
]
WORK = Workload(units=28, unit_seconds=2.0, app_start_seconds=1.0, job_per_task=4)


@pytest.fixture
def job(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "job" / "job.toml", batch_job())


def test_slot_gaps_read_a_node_as_its_slots() -> None:
    attempts = [{"worker": w, "started_at": s, "ended_at": e, "result": "succeeded"}
                for w, s, e in [("n", 0, 10), ("n", 0.5, 10.5), ("n", 10.2, 20), ("n", 11.5, 12)]]
    assert slot_gaps(attempts, 2) == [pytest.approx(0.2), pytest.approx(1.0)]
    # one slot per worker elsewhere: an attempt that overlaps another takes its lane, with no gap
    assert slot_gaps(attempts[:2], 1) == []


def test_start_up_and_overhead_come_from_the_jobs_earlier_run(job: Path) -> None:
    run_id = record_run(job, batch_job(), REHEARSAL, tasks=7)
    spec = load_spec(job)
    with Workspace() as ws:
        found = calibrate(ws.ledger, spec, WORK, backend=BATCH)
    assert found.runs == (run_id,)
    assert found.startup == pytest.approx(70.0)
    assert found.task_overhead == pytest.approx(2.0)
    assert f"calibrated from 1 earlier run of this job on azure-batch at http://127.0.0.1:9 ({run_id})" \
        in found.how


def test_other_jobs_give_only_the_gaps_and_other_accounts_nothing(job: Path, tmp_path: Path) -> None:
    other = write_toml(tmp_path / "other" / "job.toml", batch_job())
    record_run(other, batch_job(), REHEARSAL, tasks=7)
    record_run(other, batch_job("http://127.0.0.1:10"), [Attempt(1, 1, "x", 1.0, 2.0)], tasks=1)
    record_run(other, local_job(), [Attempt(1, 1, "local-1", 1.0, 2.0)], tasks=1)
    with Workspace() as ws:
        found = calibrate(ws.ledger, load_spec(job), WORK, backend=BATCH)
    assert len(found.runs) == 1 and "of any job" in found.how
    assert found.startup == pytest.approx(70.0)
    assert found.task_overhead == pytest.approx(1.0)  # another app: its time is not known here


def test_without_history_the_defaults_and_says_so(job: Path) -> None:
    with Workspace() as ws:
        found = calibrate(ws.ledger, load_spec(job), WORK, backend=BATCH)
    assert (found.startup, found.task_overhead, found.runs) == (None, None, ())
    assert found.how == "defaults: no earlier run on azure-batch at http://127.0.0.1:9 in the ledger"


def test_plan_says_which_it_used(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(job), "--unit-time", "2s", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "node start-up 5m00s, 2.0s per-task overhead" in out and "(defaults: no earlier run" in out
    record_run(job, batch_job(), REHEARSAL, tasks=7)
    assert main(["plan", str(job), "--unit-time", "2s", "--no-plot"]) == 0
    out = capsys.readouterr().out
    # --unit-time gives 2 s a line and no app start: 8 s for 4 lines, so 2 s more in each attempt
    assert "node start-up 1m10s, 3.0s per-task overhead" in out
    assert "calibrated from 1 earlier run of this job" in out
    assert main(["plan", str(job), "--unit-time", "2s", "--no-plot", "--task-overhead", "5s"]) == 0
    assert "5.0s per-task overhead" in capsys.readouterr().out
