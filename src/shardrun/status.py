"""What a run is doing or did: status, logs and the list of runs. Read-only on the ledger."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from . import layout
from .errors import UsageError
from .ledger import RunRow
from .outcome import failed_tasks
from .workspace import Workspace, get_run, run_store


def run_status(run_id: str, *, home: Path | str | None = None) -> dict[str, Any]:
    """Machine-readable status of one run (what `shardrun status --json` prints)."""
    ws = Workspace(home)
    try:
        run = get_run(ws, run_id)
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
            "retries": sum(1 for a in attempts if a["attempt"] > 1),
            "task_seconds": round(sum(a["ended_at"] - a["started_at"] for a in attempts
                                      if a["ended_at"]), 3),
            "span_seconds": round(max(ends) - min(starts), 3) if ends and starts else None,
            "cost": cost_so_far(run, attempts),
            "merged_output": run.merged_output,
            "message": run.message,
            "failed": [
                {"task_id": f.task_id, "attempts": f.attempts, "reason": f.reason,
                 "stderr_tail": f.stderr_tail}
                for f in failed_tasks(ws, run_id)
            ],
        }
    finally:
        ws.close()


def list_runs(*, home: Path | str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    ws = Workspace(home)
    try:
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
    finally:
        ws.close()


def task_log(
    run_id: str, task_id: str, *, attempt: int | None = None, stream: str = "stderr",
    home: Path | str | None = None,
) -> bytes:
    """The stored stdout or stderr of one attempt (the last one by default)."""
    ws = Workspace(home)
    try:
        run = get_run(ws, run_id)
        task = ws.ledger.task(run_id, task_id)
        if task is None:
            raise UsageError(f"run {run_id} has no task {task_id!r}")
        attempts = {int(a["attempt"]): a for a in ws.ledger.attempts(run_id, task_id)}
        if attempt is None:
            if not attempts:
                raise UsageError(f"task {task_id} of run {run_id} has not run yet")
            attempt = max(attempts)
        try:
            return run_store(ws, run).get_bytes(layout.log_key(run_id, task_id, attempt, stream))
        except FileNotFoundError:
            if attempts.get(attempt, {}).get("ended_at"):
                return b""  # the attempt ended and wrote nothing there: empty logs are not stored
            raise UsageError(f"no {stream} stored for {task_id} attempt {attempt}") from None
    finally:
        ws.close()


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts)) if ts else None


def cost_so_far(run: RunRow, attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """For a cloud run: each node's busy window (first start to last end, or now) at the VM's
    hourly price. Idle and boot time is not seen in the ledger, so this is a lower bound."""
    if run.backend == "local":
        return None
    from .plan import PRICES_AS_OF, choose_vm

    batch = (json.loads(run.spec_json).get("batch") or {})
    size = batch.get("vm_size")
    if not size:
        return None
    try:
        vm = choose_vm(size)
    except UsageError:
        return {"vm_size": size, "usd": None, "note": f"no price known for {size}"}
    spot_share = 1.0 if batch.get("autoscale") and batch.get("autoscale_spot") else (
        (batch.get("spot_nodes") or 0) / max(1, (batch.get("spot_nodes") or 0)
                                             + (batch.get("dedicated_nodes") or 0)))
    hourly = vm.spot * spot_share + vm.dedicated * (1 - spot_share)
    now = time.time()
    windows: dict[str, list[float]] = {}
    for a in attempts:
        node = str(a["worker"] or "").split("/", 1)[0]
        if not node:
            continue
        end = a["ended_at"] or now
        w = windows.setdefault(node, [a["started_at"], end])
        w[0], w[1] = min(w[0], a["started_at"]), max(w[1], end)
    node_hours = sum(e - s for s, e in windows.values()) / 3600
    return {"vm_size": vm.size, "nodes": len(windows), "node_hours": round(node_hours, 4),
            "usd_per_node_hour": round(hourly, 4), "usd": round(node_hours * hourly, 4),
            "prices_as_of": PRICES_AS_OF}
