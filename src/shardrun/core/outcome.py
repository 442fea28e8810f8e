"""How a run ends: its outcome, the tasks that failed, and the merge of its outputs in task order."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shardrun.core import layout
from shardrun.core.atomic import atomic_path
from shardrun.core.compute import RunContext
from shardrun.core.errors import MergeError, ShardrunError, UsageError
from shardrun.core.merge import check_output, merge_outputs
from shardrun.core.plugins import tail
from shardrun.core.run import Run
from shardrun.core.states import RunState, TaskState


@dataclass(frozen=True)
class FailedTask:
    task_id: str
    attempts: int
    reason: str
    stderr_tail: str
    input_name: str = ""  # the input piece's name, e.g. 'photo5.png'

    @property
    def label(self) -> str:
        return task_label(self.task_id, self.input_name)


# The names split gives the pieces it makes (lines, json, csv; files grouped per_task > 1).
_SPLIT_PIECE_NAME = re.compile(r"piece-\d{6,}(\.[^/]*)?")


def task_label(task_id: str, input_name: str) -> str:
    """'task-00005 (photo5.png)': the id, and the input the user knows it by. A piece split made
    ('piece-000005.txt') says no more than the id, so it is left out."""
    if not input_name or _SPLIT_PIECE_NAME.fullmatch(input_name):
        return task_id
    return f"{task_id} ({input_name})"


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


def finish(run: Run, *, started: float, resumed: bool = False,
           say: Callable[[str], None] = lambda note: None) -> RunResult:
    """Decide the run's outcome and merge when it may. `say`: progress notes (a cluster merge's)."""
    ledger, run_id = run.ledger, run.run_id
    counts = ledger.counts(run_id)
    failed = failed_tasks(run)
    result = RunResult(run_id, RunState.SUCCEEDED, counts, 0.0, resumed=resumed, failed=failed)
    if failed and not run.spec.run.allow_failures:
        result.status = RunState.FAILED
        result.message = f"{len(failed)} of {sum(counts.values())} tasks failed; nothing merged"
        run.set_state(RunState.FAILED, result.message)
    else:
        result.merged_output = merge(run, say)
        run.set_state(RunState.SUCCEEDED, f"{len(failed)} failed tasks left out" if failed else None)
    result.wall_time = time.monotonic() - started
    return result


def merge(run: Run, say: Callable[[str], None] = lambda note: None) -> Path:
    """Merge as a state of its own: merging, then succeeded, or merge-failed with the reason.

    A merge that fails keeps every task output; `shardrun merge RUN` (or `run`) tries it again.
    """
    run.set_state(RunState.MERGING)
    try:
        return _merge_on_cluster(run, say) if run.spec.merge.where == "cluster" else _merge(run)
    except KeyboardInterrupt:
        run.set_state(RunState.INTERRUPTED, "stopped while merging")
        raise
    except (ShardrunError, OSError) as err:
        reason = str(err) or type(err).__name__
        run.set_state(RunState.MERGE_FAILED, f"merge failed: {reason}"[:500])
        raise MergeError(f"run {run.run_id}: the merge failed ({reason}); the task outputs are "
                         f"kept: fix the cause, then `shardrun merge {run.run_id}`") from err


def result_of(run: Run) -> RunResult:
    """The result of a run that has ended, as it was recorded."""
    merged = run.row.merged_output
    return RunResult(run.run_id, run.row.status, run.ledger.counts(run.run_id), 0.0,
                     merged_output=Path(merged) if merged else None, resumed=True,
                     failed=failed_tasks(run), message=run.row.message)


def failed_tasks(run: Run, tail_lines: int = 5, *, use_store: bool = True) -> list[FailedTask]:
    """The failed tasks, each with its last attempt's reason and the end of its stderr: from the
    ledger, or (for attempts that did not record it) from the stored log when `use_store`."""
    ledger, run_id = run.ledger, run.run_id
    out = []
    for t in ledger.tasks(run_id, TaskState.FAILED):
        last = ledger.last_attempt(run_id, t.task_id) or {}
        attempt = int(last.get("attempt") or t.attempts)
        stderr_tail = str(last.get("stderr_tail") or "")
        if not stderr_tail and use_store:
            try:
                stderr = run.store.get_bytes(layout.log_key(run_id, t.task_id, attempt, "stderr"))
            except FileNotFoundError:
                stderr = b""
            stderr_tail = tail(stderr, tail_lines) if stderr.strip() else ""
        out.append(FailedTask(t.task_id, t.attempts, str(last.get("reason") or "unknown"),
                              stderr_tail, layout.input_name(t.input_key)))
    return out


def _merge(run: Run) -> Path:
    """Merge the run's outputs (task order) into [merge] output and record where it went."""
    ledger, run_id, spec, store = run.ledger, run.run_id, run.spec, run.store
    folder = run.scratch / "merge-in"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    outputs = []
    fetch = []
    # A merge command reads a folder, so it gets one; the others take the stored files as they
    # are, which saves a link per task.
    needs_folder = spec.merge.kind == "command"
    for t in ledger.tasks(run_id, TaskState.SUCCEEDED):
        local = store.local_path(t.output_key)
        if local is not None and not needs_folder:
            outputs.append(local)
            continue
        dest = folder / f"{t.task_id}{Path(t.output_key).suffix}"
        if spec.merge.kind == "folder":  # the outputs keep their names
            dest = folder / t.task_id / Path(t.output_key).name
            dest.parent.mkdir()
        if local is not None:
            dest.symlink_to(local)
        else:
            fetch.append((t.output_key, dest))
        outputs.append(dest)
    store.get_files(fetch)
    if not outputs:
        raise UsageError(f"run {run_id} has no finished outputs to merge")
    merged = merge_outputs(spec, outputs, folder, home=run.ws.home)
    ledger.set_merged_output(run_id, str(merged))
    shutil.rmtree(folder, ignore_errors=True)
    return merged


def _merge_on_cluster(run: Run, say: Callable[[str], None]) -> Path:
    """[merge] where = "cluster": the compute's merge task merges the stored outputs where they
    are; the client downloads its one result into [merge] output, atomically."""
    spec, run_id = run.spec, run.run_id
    check_output(spec, home=run.ws.home)
    merger = run.compute_provider.open_merge(run.row.backend, spec)
    if merger is None:
        raise UsageError(f"{spec.source}: [merge] where = 'cluster': [run] backend "
                         f"{run.row.backend!r} cannot merge on its nodes; use where = 'client'")
    key = layout.merged_key(run_id)
    try:
        reason = merger.merge(_merge_context(run), key, say)
        if reason is not None:
            raise MergeError(f"the merge task failed: {reason}")
        dest = spec.path(spec.merge.output)
        with atomic_path(dest) as tmp:
            run.store.get_file(key, tmp)
    except KeyboardInterrupt:
        raise  # the merge task goes on; the next `shardrun run` collects its result
    except BaseException:
        merger.close()
        raise
    merger.close()
    run.ledger.set_merged_output(run_id, str(dest))
    return dest


def _merge_context(run: Run) -> RunContext:
    """What a cluster merge needs of the run: its store and cloud resources, recorded as they
    change."""
    ledger, run_id = run.ledger, run.run_id

    def on_resource(kind: str, resource_id: str, deleted: bool) -> None:
        if deleted:
            ledger.resource_deleted(run_id, kind, resource_id)
        else:
            ledger.add_resource(run_id, kind, resource_id)

    return RunContext(run_id=run_id, command=None, store=run.store, scratch=run.scratch,
                      retries=run.spec.run.retries, timeout=run.spec.run.timeout,
                      resources=tuple(ledger.resources(run_id)),
                      resources_ever=tuple(ledger.resources(run_id, live_only=False)),
                      on_resource=on_resource)
