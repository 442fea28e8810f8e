"""The run ledger: every run, its tasks and their attempts, in SQLite.

It is what lets a run resume after the client dies, retry only failed tasks, report, and clean up
exactly what a run created. Only the client's main thread writes to it. No secret is ever stored here.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardrun.core.states import FINAL, UNFINISHED, RunState, check_transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    backend TEXT NOT NULL,
    storage TEXT NOT NULL,
    status TEXT NOT NULL,          -- a RunState (core/states.py)
    created_at REAL NOT NULL,
    finished_at REAL,
    merged_output TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    input_key TEXT NOT NULL,
    input_size INTEGER NOT NULL,
    output_key TEXT NOT NULL,
    output_size INTEGER,
    state TEXT NOT NULL,           -- a TaskState
    attempts INTEGER NOT NULL DEFAULT 0,
    segments TEXT,                 -- a piece by reference: its byte ranges (core/split_plan.py)
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(run_id, state);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    pid INTEGER,
    started_at REAL NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    result TEXT NOT NULL,          -- an AttemptResult
    reason TEXT,
    stderr_tail TEXT,              -- the end of a failed attempt's stderr (status needs no store)
    PRIMARY KEY (run_id, task_id, attempt)
);
CREATE TABLE IF NOT EXISTS sources (   -- inputs stored whole for pieces by reference
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,          -- <run>/sources/<idx>/<name> (core/layout.py)
    path TEXT NOT NULL,            -- the user's file, as it was when the run split it:
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS resources (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,            -- e.g. namespace, pool, job, container
    resource_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    deleted_at REAL,
    PRIMARY KEY (run_id, kind, resource_id)
);
"""

# (task_id, idx, input_key, input_size, output_key), and the segments of a piece by reference
TaskTuple = tuple[str, int, str, int, str] | tuple[str, int, str, int, str, str | None]


@dataclass(frozen=True)
class TaskRow:
    run_id: str
    task_id: str
    idx: int
    input_key: str
    input_size: int
    output_key: str
    output_size: int | None
    state: str
    attempts: int
    segments: str | None = None  # JSON segments of a piece that goes by reference


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, for Ledger.record_attempts; `task_state` is the task's new state
    when this attempt decides it (None: unchanged), with its output's size."""

    task_id: str
    attempt: int
    ended_at: float
    exit_code: int | None
    result: str
    reason: str | None
    worker: str = ""
    stderr_tail: str | None = None
    task_state: str | None = None
    output_size: int | None = None


@dataclass(frozen=True)
class RunRow:
    run_id: str
    job_name: str
    job_path: str
    fingerprint: str
    spec_json: str
    backend: str
    storage: str
    status: str
    created_at: float
    finished_at: float | None
    merged_output: str | None
    message: str | None


class Ledger:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        # WAL lets `shardrun status` read while a run writes; NORMAL is durable enough for WAL.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(attempts)")}
        if "stderr_tail" not in columns:  # a ledger made by an older shardrun
            self.db.execute("ALTER TABLE attempts ADD COLUMN stderr_tail TEXT")
        if "segments" not in {r[1] for r in self.db.execute("PRAGMA table_info(tasks)")}:
            self.db.execute("ALTER TABLE tasks ADD COLUMN segments TEXT")

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> _Txn:
        return _Txn(self.db)

    # runs -------------------------------------------------------------------------------------
    def create_run(
        self,
        run: RunRow,
        tasks: Iterable[TaskTuple],
    ) -> None:
        """Insert a run and its tasks (task_id, idx, input_key, input_size, output_key) at once."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.run_id, run.job_name, run.job_path, run.fingerprint, run.spec_json,
                    run.backend, run.storage, run.status, run.created_at, run.finished_at,
                    run.merged_output, run.message,
                ),
            )
            self.add_tasks(run.run_id, tasks)

    def get_run(self, run_id: str) -> RunRow | None:
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return RunRow(**dict(row)) if row else None

    def runs(self, limit: int | None = None) -> list[RunRow]:
        sql = "SELECT * FROM runs ORDER BY created_at DESC"
        rows = self.db.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [RunRow(**dict(r)) for r in rows]

    def latest_unfinished(self, job_path: str) -> RunRow | None:
        marks = ",".join("?" * len(UNFINISHED))
        row = self.db.execute(
            f"SELECT * FROM runs WHERE job_path=? AND status IN ({marks})"  # noqa: S608 (only '?')
            " ORDER BY created_at DESC LIMIT 1",
            (job_path, *sorted(UNFINISHED)),
        ).fetchone()
        return RunRow(**dict(row)) if row else None

    def set_run_status(self, run_id: str, status: RunState, message: str | None = None) -> None:
        """Move a run to `status`; the state machine (core/states.py) says which moves are allowed."""
        row = self.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is not None:
            check_transition(row[0], status)
        finished = time.time() if status in FINAL else None
        self.db.execute(
            "UPDATE runs SET status=?, message=?, finished_at=COALESCE(?, finished_at)"
            " WHERE run_id=?",
            (status, message, finished, run_id),
        )

    def set_merged_output(self, run_id: str, path: str) -> None:
        self.db.execute("UPDATE runs SET merged_output=? WHERE run_id=?", (path, run_id))

    # tasks ------------------------------------------------------------------------------------
    def tasks(self, run_id: str, state: str | None = None) -> list[TaskRow]:
        sql = "SELECT * FROM tasks WHERE run_id=?"
        args: tuple[Any, ...] = (run_id,)
        if state:
            sql += " AND state=?"
            args += (state,)
        rows = self.db.execute(sql + " ORDER BY idx", args).fetchall()
        return [TaskRow(**dict(r)) for r in rows]

    def task(self, run_id: str, task_id: str) -> TaskRow | None:
        row = self.db.execute(
            "SELECT * FROM tasks WHERE run_id=? AND task_id=?", (run_id, task_id)
        ).fetchone()
        return TaskRow(**dict(row)) if row else None

    def add_tasks(self, run_id: str, tasks: Iterable[TaskTuple]) -> None:
        """Record tasks (task_id, idx, input_key, input_size, output_key[, segments]), all pending."""
        self.db.executemany(
            "INSERT INTO tasks (run_id, task_id, idx, input_key, input_size, output_key, segments,"
            " state) VALUES (?,?,?,?,?,?,?,'pending')",
            ((run_id, *t, *((None,) if len(t) == 5 else ())) for t in tasks),
        )

    def requeue_running(self, run_id: str) -> None:
        """Tasks marked running whose attempts are gone (the client died) wait again."""
        self.db.execute(
            "UPDATE tasks SET state='pending' WHERE run_id=? AND state='running'", (run_id,)
        )

    def counts(self, run_id: str) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT state, COUNT(*) FROM tasks WHERE run_id=? GROUP BY state", (run_id,)
        ).fetchall()
        counts = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0}
        counts.update({r[0]: r[1] for r in rows})
        return counts

    def set_task_state(
        self, run_id: str, task_ids: Iterable[str], state: str, output_size: int | None = None
    ) -> None:
        self.db.executemany(
            "UPDATE tasks SET state=?, output_size=COALESCE(?, output_size)"
            " WHERE run_id=? AND task_id=?",
            ((state, output_size, run_id, t) for t in task_ids),
        )

    # attempts ---------------------------------------------------------------------------------
    def attempt_started(
        self, run_id: str, task_id: str, attempt: int, worker: str, pid: int | None,
        started_at: float,
    ) -> None:
        self.record_attempts(run_id, [(task_id, attempt, worker, pid, started_at)], [])

    def attempt_finished(
        self, run_id: str, task_id: str, attempt: int, ended_at: float, exit_code: int | None,
        result: str, reason: str | None, worker: str = "", stderr_tail: str | None = None,
    ) -> None:
        self.record_attempts(run_id, [], [AttemptEnd(task_id, attempt, ended_at, exit_code, result,
                                                     reason, worker, stderr_tail)])

    def record_attempts(self, run_id: str, started: Sequence[tuple[str, int, str, int | None, float]],
                        ended: Sequence[AttemptEnd]) -> None:
        """A batch of attempt events, four statements whatever its size: `started` holds
        (task_id, attempt, worker, pid, started_at); every start is applied before every end, as
        an attempt starts before it ends. Call it inside a transaction to commit the batch once."""
        if started:
            self.db.executemany(
                "INSERT OR REPLACE INTO attempts (run_id, task_id, attempt, worker, pid,"
                " started_at, result) VALUES (?,?,?,?,?,?,'running')",
                ((run_id, *row) for row in started),
            )
            self.db.executemany(
                "UPDATE tasks SET state='running', attempts=MAX(attempts, ?)"
                " WHERE run_id=? AND task_id=?",
                ((attempt, run_id, task_id) for task_id, attempt, *_ in started),
            )
        if ended:
            # An attempt that ended without a start (it failed before it could: store unreachable,
            # bad image, ...) is inserted, starting when it ended.
            self.db.executemany(
                "INSERT INTO attempts (run_id, task_id, attempt, worker, pid, started_at, ended_at,"
                " exit_code, result, reason, stderr_tail) VALUES (?,?,?,?,NULL,?,?,?,?,?,?)"
                " ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET ended_at=excluded.ended_at,"
                " exit_code=excluded.exit_code, result=excluded.result, reason=excluded.reason,"
                " stderr_tail=excluded.stderr_tail",
                ((run_id, e.task_id, e.attempt, e.worker, e.ended_at, e.ended_at, e.exit_code,
                  e.result, e.reason, e.stderr_tail) for e in ended),
            )
            self.db.executemany(
                "UPDATE tasks SET attempts=MAX(attempts, ?), state=COALESCE(?, state),"
                " output_size=COALESCE(?, output_size) WHERE run_id=? AND task_id=?",
                ((e.attempt, e.task_state, e.output_size, run_id, e.task_id) for e in ended),
            )

    def attempts(self, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM attempts WHERE run_id=?"
        args: tuple[Any, ...] = (run_id,)
        if task_id:
            sql += " AND task_id=?"
            args += (task_id,)
        rows = self.db.execute(sql + " ORDER BY task_id, attempt", args).fetchall()
        return [dict(r) for r in rows]

    def open_attempts(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM attempts WHERE run_id=? AND result='running'", (run_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def last_attempt(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM attempts WHERE run_id=? AND task_id=? ORDER BY attempt DESC LIMIT 1",
            (run_id, task_id),
        ).fetchone()
        return dict(row) if row else None

    # sources ----------------------------------------------------------------------------------
    def add_sources(self, run_id: str, rows: list[tuple[int, str, int, int]]) -> None:
        """(idx, path, size, mtime_ns) of each input the run stored whole."""
        self.db.executemany("INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?)",
                            [(run_id, *row) for row in rows])

    def sources(self, run_id: str) -> list[tuple[int, str, int, int]]:
        rows = self.db.execute("SELECT idx, path, size, mtime_ns FROM sources WHERE run_id=? "
                               "ORDER BY idx", (run_id,)).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # resources --------------------------------------------------------------------------------
    def add_resource(self, run_id: str, kind: str, resource_id: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO resources VALUES (?,?,?,?,NULL)",
            (run_id, kind, resource_id, time.time()),
        )

    def resources(self, run_id: str, live_only: bool = True) -> list[tuple[str, str]]:
        sql = "SELECT kind, resource_id FROM resources WHERE run_id=?"
        if live_only:
            sql += " AND deleted_at IS NULL"
        sql += " ORDER BY rowid"  # creation order: the latest job is the one to re-attach to
        return [(r[0], r[1]) for r in self.db.execute(sql, (run_id,)).fetchall()]

    def resource_deleted(self, run_id: str, kind: str, resource_id: str) -> None:
        self.db.execute(
            "UPDATE resources SET deleted_at=? WHERE run_id=? AND kind=? AND resource_id=?",
            (time.time(), run_id, kind, resource_id),
        )


class _Txn:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error: one batch of events, one fsync."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
