"""The pipeline's entry points: spec -> split -> storage -> compute -> monitor -> merge.

`run_job` starts a run or resumes the unfinished one of the same job file; `retry_run` reruns the
failed tasks of a run; `merge_run` merges one again. Making a run is in prepare.py, running its
tasks in execute.py, and how it ends (the outcome and the merge) in outcome.py. Each entry point
owns the run while it works (owner.py), and SIGTERM stops it like Ctrl-C at every phase.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shardrun.core import layout, provider
from shardrun.core.errors import MergeError, UsageError
from shardrun.core.execute import execute, lost_outputs, recover
from shardrun.core.interrupts import sigterm_as_interrupt
from shardrun.core.outcome import RunResult, merge, result_of
from shardrun.core.owner import holding, job_lock, run_lock
from shardrun.core.preflight import check_job
from shardrun.core.prepare import ShardSizer, abandon, prepare_run
from shardrun.core.progress import NullProgress, ProgressView
from shardrun.core.run import Run, open_run
from shardrun.core.spec import load_spec
from shardrun.core.states import RunState, TaskState
from shardrun.core.workspace import Workspace, resolve_home


def run_job(
    job_path: Path | str,
    *,
    home: Path | str | None = None,
    new: bool = False,
    progress: ProgressView | None = None,
    wait: bool = False,
    size_shards: ShardSizer | None = None,
) -> RunResult:
    """Run a job file; resume its unfinished run if there is one (unless `new`).

    `size_shards` chooses [split] per_task = "auto" for a new run (`shardrun.run_job` passes the
    planner's); a resumed run keeps the size it started with.

    Another client working on the same job makes this stop at once (RunBusy, exit 3), or with
    `wait` wait until that client is done.
    """
    spec = load_spec(job_path)
    check_job(spec, home=resolve_home(home))  # before the home exists: a bad job leaves nothing
    view = progress or NullProgress()
    job_key = str(Path(job_path).resolve())
    with Workspace(home) as ws, sigterm_as_interrupt(), \
            holding(job_lock(ws.home, job_key), wait=wait, on_wait=view.message) as owned_job:
        waited = owned_job.waited_for
        if waited is not None and waited.run_id and not new:
            done = ws.ledger.get_run(waited.run_id)
            if done is not None and done.status in (RunState.SUCCEEDED, RunState.FAILED):
                return result_of(open_run(ws, waited.run_id))  # the run we waited for is done
        existing = None if new else ws.ledger.latest_unfinished(job_key)
        if existing is not None and existing.status == RunState.SPLITTING:
            abandon(ws, existing, "its client stopped while splitting; started afresh")
            existing = None
        if existing is not None and existing.fingerprint != spec.fingerprint():
            raise UsageError(
                f"{job_path} changed since unfinished run {existing.run_id} started; "
                f"run with --new to start afresh, or `shardrun cleanup {existing.run_id}`"
            )
        if existing is not None:
            owned_job.record(existing.run_id)
            with holding(run_lock(ws.home, existing.run_id), wait=wait, run_id=existing.run_id,
                         on_wait=view.message):
                run = open_run(ws, existing.run_id, job_file_edits=True)
                _say_edits(run, view)
                if run.state == RunState.MERGE_FAILED:
                    view.message(f"run {run.run_id}: {run.row.message}; merging again")
                return _to_the_end(run, lambda: execute(run, progress=progress, resumed=True))
        # Costly checks (credentials, reachability) before anything is uploaded or recorded.
        provider.for_compute(spec.run.backend).preflight(spec, ws.store(spec.run.storage, spec))
        sized = spec
        if spec.split.per_task == "auto":
            if size_shards is None:
                raise UsageError(f'{job_path}: [split] per_task = "auto" needs the planner: run it with '
                                 "`shardrun run` or shardrun.run_job")
            sized = size_shards(spec, ws.ledger, view)
        run_id = layout.new_run_id(spec.name)
        owned_job.record(run_id)
        with holding(run_lock(ws.home, run_id), run_id=run_id):
            run = prepare_run(ws, sized, job_key, run_id, view, fingerprint=spec.fingerprint())
            # A run made just now has no attempts and no outputs: nothing to recover.
            return _to_the_end(run, lambda: execute(run, progress=progress, recovered=True))


def retry_run(
    run_id: str,
    *,
    home: Path | str | None = None,
    task_ids: list[str] | None = None,
    progress: ProgressView | None = None,
    wait: bool = False,
) -> RunResult:
    """Run the failed tasks (or the named ones) of a finished run again, then merge."""
    view = progress or NullProgress()
    with Workspace(home) as ws, sigterm_as_interrupt(), \
            holding(run_lock(ws.home, run_id), wait=wait, run_id=run_id, on_wait=view.message):
        run = open_run(ws, run_id, job_file_edits=True)
        _say_edits(run, view)
        if run.state == RunState.CLEANED:
            raise UsageError(f"run {run_id} was cleaned up; its inputs are gone")
        recover(run)  # first: a named task must run again even though its output is stored
        if task_ids:
            known = {t.task_id for t in ws.ledger.tasks(run_id)}
            unknown = [t for t in task_ids if t not in known]
            if unknown:
                raise UsageError(f"run {run_id} has no task {unknown[0]!r}")
            targets = task_ids
        else:
            targets = [t.task_id for t in ws.ledger.tasks(run_id, TaskState.FAILED)]
        if not targets and not ws.ledger.tasks(run_id, TaskState.PENDING):
            raise UsageError(f"run {run_id} has no failed tasks to retry")
        with ws.ledger.transaction():
            ws.ledger.set_task_state(run_id, targets, TaskState.PENDING)
            ws.ledger.set_run_status(run_id, RunState.RUNNING)
        run.refresh()
        return _to_the_end(run, lambda: execute(run, progress=progress, resumed=True,
                                                recovered=True))


def merge_run(run_id: str, *, home: Path | str | None = None, wait: bool = False,
              progress: ProgressView | None = None) -> Path:
    """Merge the stored outputs of a run's succeeded tasks, in task order, into [merge] output.

    Outputs that are gone from the store are not merged around: their tasks wait to run again,
    and the error says how (`shardrun run JOB` resumes the run).
    """
    with Workspace(home) as ws, sigterm_as_interrupt(), \
            holding(run_lock(ws.home, run_id), wait=wait, run_id=run_id):
        run = open_run(ws, run_id, job_file_edits=True)
        _say_edits(run, progress or NullProgress())
        if run.state == RunState.CLEANED:
            raise UsageError(f"run {run_id} was cleaned up; its outputs are gone")
        lost = lost_outputs(run)
        if lost:
            named = ", ".join(t.task_id for t in lost[:5]) + (" ..." if len(lost) > 5 else "")
            with ws.ledger.transaction():
                ws.ledger.set_task_state(run_id, [t.task_id for t in lost], TaskState.PENDING)
                ws.ledger.set_run_status(run_id, RunState.RUNNING,
                                         f"outputs of {len(lost)} tasks were lost; they run again")
            raise MergeError(f"run {run_id}: the outputs of {len(lost)} task(s) are gone from the "
                             f"store ({named}); `shardrun run {run.row.job_path}` runs them "
                             "again and merges")
        before, message = run.state, run.row.message
        merged = merge(run, (progress or NullProgress()).message)
        if before in (RunState.SUCCEEDED, RunState.FAILED):  # merging again changes no outcome
            run.set_state(before, message)
        else:
            run.set_state(RunState.SUCCEEDED)
        return merged


def _say_edits(run: Run, view: ProgressView) -> None:
    if run.edits:
        view.message(f"run {run.run_id} uses the job file's current {', '.join(run.edits)}")


def _to_the_end(run: Run, work: Callable[[], RunResult]) -> RunResult:
    """Do the work; a Ctrl-C or SIGTERM that lands once the run has ended (its outcome is in the
    ledger) does not hide that outcome: the result is returned as recorded."""
    try:
        return work()
    except KeyboardInterrupt:
        run.refresh()
        if run.state in (RunState.SUCCEEDED, RunState.FAILED):
            return result_of(run)
        raise
