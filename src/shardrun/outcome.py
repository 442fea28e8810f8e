"""How a run ends: its outcome, the tasks that failed, and the merge of its outputs in task order."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import layout
from .errors import UsageError
from .merge import merge_outputs
from .plugins import tail
from .workspace import Workspace, get_run, run_store, spec_for_run


@dataclass(frozen=True)
class FailedTask:
    task_id: str
    attempts: int
    reason: str
    stderr_tail: str


@dataclass
class RunResult:
    run_id: str
    status: str
    counts: dict[str, int]
    wall_time: float
    merged_output: Path | None = None
    resumed: bool = False
    failed: list[FailedTask] = field(default_factory=list)
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def finish(ws: Workspace, run_id: str, *, started: float, resumed: bool = False) -> RunResult:
    """Decide the run's outcome and merge when it may."""
    run = get_run(ws, run_id)
    spec = spec_for_run(run)
    counts = ws.ledger.counts(run_id)
    failed = failed_tasks(ws, run_id)
    result = RunResult(run_id, "succeeded", counts, 0.0, resumed=resumed, failed=failed)
    if failed and not spec.run.allow_failures:
        result.status = "failed"
        result.message = f"{len(failed)} of {sum(counts.values())} tasks failed; nothing merged"
        ws.ledger.set_run_status(run_id, "failed", result.message)
    else:
        result.merged_output = merge_run(run_id, ws=ws)
        ws.ledger.set_run_status(run_id, "succeeded",
                                 f"{len(failed)} failed tasks left out" if failed else None)
    result.wall_time = time.monotonic() - started
    return result


def failed_tasks(ws: Workspace, run_id: str, tail_lines: int = 5) -> list[FailedTask]:
    run = get_run(ws, run_id)
    store = run_store(ws, run)
    out = []
    for t in ws.ledger.tasks(run_id, "failed"):
        last = ws.ledger.last_attempt(run_id, t.task_id) or {}
        attempt = int(last.get("attempt") or t.attempts)
        try:
            stderr = store.get_bytes(layout.log_key(run_id, t.task_id, attempt, "stderr"))
        except FileNotFoundError:
            stderr = b""
        out.append(FailedTask(t.task_id, t.attempts, str(last.get("reason") or "unknown"),
                              tail(stderr, tail_lines) if stderr.strip() else ""))
    return out


def merge_run(run_id: str, *, ws: Workspace | None = None, home: Path | str | None = None) -> Path:
    """Merge the stored outputs of a run's succeeded tasks, in task order, into [merge] output."""
    own = ws is None
    ws = ws or Workspace(home)
    try:
        run = get_run(ws, run_id)
        spec = spec_for_run(run)
        store = ws.store(run.storage, spec=spec)
        folder = ws.scratch(run_id) / "merge-in"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        outputs = []
        fetch = []
        # A merge command reads a folder, so it gets one; the others take the stored files as they
        # are, which saves a link per task.
        needs_folder = spec.merge.kind == "command"
        for t in ws.ledger.tasks(run_id, "succeeded"):
            local = store.local_path(t.output_key)
            if local is not None and not needs_folder:
                outputs.append(local)
                continue
            dest = folder / f"{t.task_id}{Path(t.output_key).suffix}"
            if local is not None:
                dest.symlink_to(local)
            else:
                fetch.append((t.output_key, dest))
            outputs.append(dest)
        store.get_files(fetch)
        if not outputs:
            raise UsageError(f"run {run_id} has no finished outputs to merge")
        merged = merge_outputs(spec, outputs, folder)
        ws.ledger.set_merged_output(run_id, str(merged))
        shutil.rmtree(folder, ignore_errors=True)
        return merged
    finally:
        if own:
            ws.close()
