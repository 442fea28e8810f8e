"""What a run is doing or did: status, logs and the list of runs. Read-only on the ledger."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shardrun.core import layout
from shardrun.core.errors import UsageError
from shardrun.core.ledger import TaskRow
from shardrun.core.outcome import failed_tasks
from shardrun.core.outcome import task_label as outcome_label
from shardrun.core.provider import Cost
from shardrun.core.run import Run, open_run
from shardrun.core.states import RunState, retry_flags
from shardrun.core.workspace import Workspace


def run_status(run_id: str, *, home: Path | str | None = None) -> dict[str, Any]:
    """Machine-readable status of one run (what `shardrun status --json` prints)."""
    with Workspace(home) as ws:
        handle = open_run(ws, run_id)
        run = handle.row
        counts = ws.ledger.counts(run_id)
        attempts = ws.ledger.attempts(run_id)
        starts = [a["started_at"] for a in attempts]
        ends = [a["ended_at"] for a in attempts if a["ended_at"]]
        return {
            "run_id": run.run_id,
            "job": run.job_name,
            "job_path": run.job_path,
            "status": run.status,
            "backend": run.backend,
            "storage": run.storage,
            "created_at": _iso(run.created_at),
            "finished_at": _iso(run.finished_at),
            "tasks": {"total": sum(counts.values()), **counts},
            "attempts": len(attempts),
            # an attempt after a failed or timed-out one; not one after the client stopped
            "retries": sum(retry_flags(attempts)),
            "task_seconds": round(sum(a["ended_at"] - a["started_at"] for a in attempts
                                      if a["ended_at"]), 3),
            "span_seconds": round(max(ends) - min(starts), 3) if ends and starts else None,
            "cost": _as_dict(run_cost(handle, attempts)),
            "merged_output": run.merged_output,
            "message": run.message,
            "failed": [
                {"task_id": f.task_id, "input_name": f.input_name, "attempts": f.attempts,
                 "reason": f.reason, "stderr_tail": f.stderr_tail}
                for f in failed_tasks(handle, use_store=False)
            ],
        }


def list_runs(*, home: Path | str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    with Workspace(home) as ws:
        out = []
        for run in ws.ledger.runs(limit):
            counts = ws.ledger.counts(run.run_id)
            out.append({
                "run_id": run.run_id, "job": run.job_name, "status": run.status,
                "created_at": _iso(run.created_at), "tasks": sum(counts.values()),
                "succeeded": counts["succeeded"], "failed": counts["failed"],
                "job_path": run.job_path,
            })
        return out


def task_log(
    run_id: str, task_id: str, *, attempt: int | None = None, stream: str = "stderr",
    home: Path | str | None = None,
) -> bytes:
    """The stored stdout or stderr of one attempt (the last one by default)."""
    with Workspace(home) as ws:
        run = open_run(ws, run_id)
        if run.state == RunState.CLEANED:
            raise UsageError(f"run {run_id} was cleaned up: its logs were deleted with it")
        task = _find_task(ws, run_id, task_id)
        task_id = task.task_id
        attempts = {int(a["attempt"]): a for a in ws.ledger.attempts(run_id, task_id)}
        if attempt is None:
            if not attempts:
                raise UsageError(f"task {task_id} of run {run_id} has not run yet")
            attempt = max(attempts)
        try:
            return run.store.get_bytes(layout.log_key(run_id, task_id, attempt, stream))
        except FileNotFoundError:
            if attempts.get(attempt, {}).get("ended_at"):
                return b""  # the attempt ended and wrote nothing there: empty logs are not stored
            raise UsageError(f"no {stream} stored for {task_id} attempt {attempt}") from None


def _find_task(ws: Workspace, run_id: str, task_id: str) -> TaskRow:
    """A task by its id, or by its input piece's name ('photo5.png') when that names one task."""
    task = ws.ledger.task(run_id, task_id)
    if task is not None:
        return task
    named = [t for t in ws.ledger.tasks(run_id) if layout.input_name(t.input_key) == task_id]
    if len(named) == 1:
        return named[0]
    if named:
        raise UsageError(f"run {run_id}: {len(named)} tasks have the input {task_id!r}: "
                         f"name one by its id ({', '.join(t.task_id for t in named[:5])})")
    raise UsageError(f"run {run_id} has no task {task_id!r}")


def task_label(run_id: str, task_id: str, *, home: Path | str | None = None) -> str:
    """'task-00005 (photo5.png)': a task's id and its input's name."""
    with Workspace(home) as ws:
        open_run(ws, run_id)
        task = _find_task(ws, run_id, task_id)
        return outcome_label(task.task_id, layout.input_name(task.input_key))


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts)) if ts else None


def run_cost(run: Run, attempts: Sequence[Mapping[str, Any]], now: float | None = None) -> Cost | None:
    """The run's cost so far, as its compute provider counts it (None: its compute costs nothing,
    e.g. this machine). `status` and `report` both show this figure."""
    return run.compute_provider.cost(run.spec, attempts, time.time() if now is None else now)


def _as_dict(cost: Cost | None) -> dict[str, Any] | None:
    return cost.as_dict() if cost is not None else None
