"""Ledger.record_attempts: a batch of attempt events in a few statements, with the same outcome as
recording them one at a time in order."""

from __future__ import annotations

from pathlib import Path

from shardrun.core.ledger import AttemptEnd, Ledger, RunRow

RUN = "batch-261130-abcdef"


def ledger_with_tasks(path: Path, n: int) -> Ledger:
    ledger = Ledger(path)
    row = RunRow(RUN, "batch", "/job.toml", "fp", "{}", "local", "local", "running", 1.0, None,
                 None, None)
    ledger.create_run(row, [(f"t{i}", i, f"{RUN}/inputs/t{i}/in", 1, f"{RUN}/outputs/t{i}/out")
                            for i in range(1, n + 1)])
    return ledger


def test_one_batch_holds_starts_ends_retries_and_an_end_without_start(tmp_path: Path) -> None:
    ledger = ledger_with_tasks(tmp_path / "ledger.sqlite", 4)
    started = [("t1", 1, "w1", 101, 10.0), ("t2", 1, "w2", 102, 10.5), ("t2", 2, "w2", 103, 12.0),
               ("t4", 1, "w1", 104, 13.0)]
    ended = [
        AttemptEnd("t1", 1, 11.0, 0, "succeeded", None, "w1", task_state="succeeded", output_size=7),
        AttemptEnd("t2", 1, 11.5, 1, "failed", "exit code 1", "w2", "boom"),  # retried: no state
        AttemptEnd("t2", 2, 12.5, 1, "failed", "exit code 1", "w2", "boom", task_state="failed"),
        AttemptEnd("t3", 1, 14.0, None, "failed", "store unreachable", "w1", task_state="failed"),
        AttemptEnd("t4", 1, 15.0, -2, "interrupted", "stopped by the user", "w1"),
    ]
    with ledger.transaction():
        ledger.record_attempts(RUN, started, ended)

    tasks = {t.task_id: (t.state, t.attempts, t.output_size) for t in ledger.tasks(RUN)}
    assert tasks == {"t1": ("succeeded", 1, 7), "t2": ("failed", 2, None), "t3": ("failed", 1, None),
                     "t4": ("running", 1, None)}  # interrupted: recover() sends it back to pending
    rows = {(a["task_id"], a["attempt"]): a for a in ledger.attempts(RUN)}
    assert sorted(rows) == [("t1", 1), ("t2", 1), ("t2", 2), ("t3", 1), ("t4", 1)]
    # an end keeps what the start recorded
    assert (rows["t2", 1]["pid"], rows["t2", 1]["started_at"], rows["t2", 1]["ended_at"]) == (102, 10.5, 11.5)
    assert rows["t2", 1]["stderr_tail"] == "boom"
    # an attempt that ended without starting starts when it ended, with no pid
    assert (rows["t3", 1]["pid"], rows["t3", 1]["started_at"], rows["t3", 1]["worker"]) == (None, 14.0, "w1")
    assert ledger.open_attempts(RUN) == []


def test_a_batch_gives_what_recording_one_event_at_a_time_gives(tmp_path: Path) -> None:
    batched = ledger_with_tasks(tmp_path / "a.sqlite", 3)
    single = ledger_with_tasks(tmp_path / "b.sqlite", 3)
    started = [(f"t{i}", 1, "w", 100 + i, float(i)) for i in range(1, 4)]
    ended = [AttemptEnd(f"t{i}", 1, i + 0.5, 0, "succeeded", None, "w", task_state="succeeded",
                        output_size=i) for i in range(1, 3)]  # t3 is still running
    with batched.transaction():
        batched.record_attempts(RUN, started, ended)
    for task, attempt, worker, pid, at in started:
        single.attempt_started(RUN, task, attempt, worker, pid, at)
    for e in ended:
        single.attempt_finished(RUN, e.task_id, e.attempt, e.ended_at, e.exit_code, e.result,
                                e.reason, e.worker, e.stderr_tail)
        single.set_task_state(RUN, [e.task_id], "succeeded", e.output_size)
    assert batched.attempts(RUN) == single.attempts(RUN)
    assert batched.tasks(RUN) == single.tasks(RUN)
    assert [a["task_id"] for a in batched.open_attempts(RUN)] == ["t3"]
