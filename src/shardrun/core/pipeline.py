"""The pipeline: spec -> split -> storage -> compute -> monitor -> merge.

`run_job` starts a run or resumes the unfinished one for the same job file; `retry_run` reruns the
failed tasks of a run; how a run ends (its outcome and the merge) is in outcome.py. The ledger is
written only by these two modules, from the main thread.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from shardrun.core import layout, provider
from shardrun.core.compute import AttemptEvent, RunContext, TaskSpec
from shardrun.core.errors import RunInterrupted, UsageError
from shardrun.core.ledger import Ledger, RunRow
from shardrun.core.outcome import RunResult, finish
from shardrun.core.preflight import check_job, resolved_command
from shardrun.core.progress import NullProgress, ProgressView
from shardrun.core.run import Run, open_run
from shardrun.core.spec import JobSpec, load_spec
from shardrun.core.split import resolve_inputs, split_job
from shardrun.core.states import AttemptResult, RunState, TaskState
from shardrun.core.store import ReportsTransfers
from shardrun.core.workspace import Workspace

POLL = 0.2  # seconds between event polls; also the timeout check granularity
COUNTS_EVERY = 0.25  # seconds between progress counts from the ledger (a query over every task)
BIG_INPUT = 64 * 2**20


def run_job(
    job_path: Path | str,
    *,
    home: Path | str | None = None,
    new: bool = False,
    progress: ProgressView | None = None,
) -> RunResult:
    """Run a job file; resume its unfinished run if there is one (unless `new`)."""
    spec = load_spec(job_path)
    check_job(spec)
    ws = Workspace(home)
    try:
        job_key = str(Path(job_path).resolve())
        existing = None if new else ws.ledger.latest_unfinished(job_key)
        if existing is not None and existing.status == RunState.SPLITTING:
            _abandon(ws, existing, "the client stopped while splitting; started afresh")
            existing = None
        if existing is not None and existing.fingerprint != spec.fingerprint():
            raise UsageError(
                f"{job_path} changed since unfinished run {existing.run_id} started; "
                f"run with --new to start afresh, or `shardrun cleanup {existing.run_id}`"
            )
        if existing is not None:
            return execute(open_run(ws, existing.run_id), progress=progress, resumed=True)
        # Costly checks (credentials, reachability) before anything is uploaded or recorded.
        provider.for_compute(spec.run.backend).preflight(spec, ws.store(spec.run.storage, spec))
        run = prepare_run(ws, spec, job_key, progress or NullProgress())
        return execute(run, progress=progress)
    finally:
        ws.close()


def prepare_run(ws: Workspace, spec: JobSpec, job_key: str, view: ProgressView | None = None) -> Run:
    """Split the input, put the pieces in storage, and record the run and its tasks."""
    view = view or NullProgress()
    run_id = layout.new_run_id(spec.name)
    ledger = ws.ledger
    row = RunRow(run_id, spec.name, job_key, spec.fingerprint(),
                 json.dumps(spec.model_dump(mode="json")), spec.run.backend, spec.run.storage,
                 RunState.SPLITTING, time.time(), None, None, None)
    ledger.create_run(row, [])
    ledger.add_resource(run_id, "namespace", run_id)
    run = Run(ws, row, spec)
    store = run.store
    if isinstance(store, ReportsTransfers):  # the pieces' upload can be long: show its bytes
        store.report_transfers(view)
    staging = ws.scratch(run_id) / "pieces"
    staging.mkdir(parents=True)
    try:
        began = time.monotonic()
        size = sum(p.stat().st_size for p in resolve_inputs(spec) if p.is_file())
        if size > BIG_INPUT:  # only then is the wait worth a word (and a bad input stays one line)
            view.message(f"splitting {size / 2**20:,.0f} MiB of {spec.split.input} for run {run_id}")
        pieces = split_job(spec, staging)
        view.message(f"{len(pieces)} pieces from {spec.split.input} in {time.monotonic() - began:.1f}s")
        tasks = []
        uploads: list[tuple[str, Path]] = []
        for index, piece in enumerate(pieces, 1):
            task_id = layout.task_id(index, len(pieces))
            out_name = spec.app.output_name or f"output{piece.suffix if piece.is_file() else ''}"
            if piece.is_dir():
                in_key = layout.input_key(run_id, task_id, piece.name) + "/"
                files = sorted(p for p in piece.rglob("*") if p.is_file())
                uploads += [(in_key + f.relative_to(piece).as_posix(), f) for f in files]
                size = sum(f.stat().st_size for f in files)
            else:
                in_key = layout.input_key(run_id, task_id, piece.name)
                uploads.append((in_key, piece))
                size = piece.stat().st_size
            tasks.append((task_id, index, in_key, size,
                          layout.output_key(run_id, task_id, out_name)))
        store.put_files(uploads, move=True)  # the pieces are ours: move, don't copy
        shared = [(layout.file_key(run_id, f.name), spec.path(f)) for f in spec.app.files]
        if spec.app.config:
            shared.append((layout.config_key(run_id, spec.app.config.name), spec.path(spec.app.config)))
        store.put_files(shared, move=False)  # the user's files: copy
    except BaseException as err:
        _abandon(ws, run.row, f"split failed: {err}")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with ledger.transaction():
        ledger.add_tasks(run_id, tasks)
        ledger.set_run_status(run_id, RunState.RUNNING)
    run.refresh()
    return run


def _abandon(ws: Workspace, row: RunRow, message: str) -> None:
    """A run that never got its tasks: mark it failed and remove what it stored."""
    ws.ledger.set_run_status(row.run_id, RunState.FAILED, message[:500])
    with contextlib.suppress(Exception):
        ws.store(row.storage, open_run(ws, row.run_id).spec).delete_namespace(row.run_id)
        ws.ledger.resource_deleted(row.run_id, "namespace", row.run_id)
    shutil.rmtree(ws.scratch(row.run_id), ignore_errors=True)


def retry_run(
    run_id: str,
    *,
    home: Path | str | None = None,
    task_ids: list[str] | None = None,
    progress: ProgressView | None = None,
) -> RunResult:
    """Run the failed tasks (or the named ones) of a finished run again, then merge."""
    with Workspace(home) as ws:
        run = open_run(ws, run_id)
        if run.state == RunState.CLEANED:
            raise UsageError(f"run {run_id} was cleaned up; its inputs are gone")
        if task_ids:
            known = {t.task_id for t in ws.ledger.tasks(run_id)}
            unknown = [t for t in task_ids if t not in known]
            if unknown:
                raise UsageError(f"run {run_id} has no task {unknown[0]!r}")
            targets = task_ids
        else:
            targets = [t.task_id for t in ws.ledger.tasks(run_id, TaskState.FAILED)]
        if not targets:
            raise UsageError(f"run {run_id} has no failed tasks to retry")
        with ws.ledger.transaction():
            ws.ledger.set_task_state(run_id, targets, TaskState.PENDING)
            ws.ledger.set_run_status(run_id, RunState.RUNNING)
        run.refresh()
        return execute(run, progress=progress, resumed=True)


def recover(run: Run) -> None:
    """Make the ledger true again after a client died: close open attempts, trust stored outputs."""
    ledger, run_id = run.ledger, run.run_id
    # One listing instead of a request per task (Blob Storage), and none inside the transaction.
    stored = {o.key: o.size for o in run.store.list(f"{run_id}/outputs/")}
    now = time.time()
    with ledger.transaction():
        for a in ledger.open_attempts(run_id):
            ledger.attempt_finished(run_id, a["task_id"], a["attempt"], now, None, AttemptResult.LOST,
                                    "the client stopped while this attempt ran")
        ledger.requeue_running(run_id)
        # An output is stored only after its attempt succeeded, so a stored output means done,
        # even if the client died before it could record that.
        for t in ledger.tasks(run_id, TaskState.PENDING):
            size = stored.get(t.output_key)
            if size is not None:
                ledger.set_task_state(run_id, [t.task_id], TaskState.SUCCEEDED, size)


def execute(run: Run, *, progress: ProgressView | None = None, resumed: bool = False) -> RunResult:
    """Run every pending task of a recorded run to completion, then merge."""
    started = time.monotonic()
    view = progress or NullProgress()
    spec, ledger, run_id = run.spec, run.ledger, run.run_id
    if run.state != RunState.RUNNING:
        run.set_state(RunState.RUNNING)
    recover(run)
    store = run.store
    pending = ledger.tasks(run_id, TaskState.PENDING)
    backend = run.compute_provider.open_compute(run.row.backend, spec)

    def on_resource(kind: str, resource_id: str, deleted: bool) -> None:
        if deleted:
            ledger.resource_deleted(run_id, kind, resource_id)
        else:
            ledger.add_resource(run_id, kind, resource_id)

    ctx = RunContext(
        run_id=run_id,
        command=resolved_command(spec),
        store=store,
        scratch=run.scratch,
        env=dict(spec.app.env),
        config_key=layout.config_key(run_id, spec.app.config.name) if spec.app.config else None,
        file_keys=tuple(layout.file_key(run_id, f.name) for f in spec.app.files),
        retries=spec.run.retries,
        timeout=spec.run.timeout,
        concurrency=min(spec.concurrency, max(1, len(pending))),
        resources=tuple(ledger.resources(run_id)),
        resources_ever=tuple(ledger.resources(run_id, live_only=False)),
        on_resource=on_resource,
    )
    total = len(ledger.tasks(run_id))
    counts = ledger.counts(run_id)
    view.start(run_id, total, counts)
    try:
        with _sigterm_as_interrupt():
            backend.start(ctx)
            backend.submit([TaskSpec(t.task_id, t.input_key, t.output_key, t.attempts + 1)
                            for t in pending])
            open_tasks = {t.task_id for t in pending}
            stale = False
            next_counts = 0.0
            while open_tasks:
                events = backend.events(POLL)
                for note in backend.notices():
                    view.message(note)
                if events:
                    _record(ledger, run_id, events, view)
                    open_tasks -= {e.task_id for e in events if e.kind == "finished" and e.final}
                    stale = True
                if stale and (time.monotonic() >= next_counts or not open_tasks):
                    counts = ledger.counts(run_id)
                    stale = False
                    next_counts = time.monotonic() + COUNTS_EVERY
                view.update(counts)
    except KeyboardInterrupt:
        backend.stop()
        _record(ledger, run_id, backend.events(0), view)
        recover(run)
        run.set_state(RunState.INTERRUPTED, "stopped by the user")
        view.close()
        if backend.detaches:
            raise RunInterrupted(
                f"detached from run {run_id}: its tasks go on on {run.row.backend}. Re-attach with: "
                f"shardrun run {run.row.job_path}; stop it and delete its resources with: "
                f"shardrun cleanup {run_id} --force"
            ) from None
        raise RunInterrupted(
            f"run {run_id} stopped; finished tasks are kept. Resume with: shardrun run {run.row.job_path}"
        ) from None
    finally:
        backend.close()
        for note in backend.notices():  # e.g. what could not be deleted at the end
            view.message(note)
    view.close()
    return finish(run, started=started, resumed=resumed)


def _record(ledger: Ledger, run_id: str, events: list[AttemptEvent], view: ProgressView) -> None:
    with ledger.transaction():
        for e in events:
            if e.kind == "started":
                ledger.attempt_started(run_id, e.task_id, e.attempt, e.worker, e.pid, e.time)
                continue
            ledger.attempt_finished(run_id, e.task_id, e.attempt, e.time, e.exit_code, e.result,
                                    e.reason)
            if e.final and e.result != AttemptResult.INTERRUPTED:
                state = TaskState.SUCCEEDED if e.result == AttemptResult.SUCCEEDED else TaskState.FAILED
                ledger.set_task_state(run_id, [e.task_id], state, e.output_size)
    for e in events:
        if e.kind == "finished" and e.result not in (AttemptResult.SUCCEEDED, AttemptResult.INTERRUPTED):
            again = "" if e.final else ", retrying"
            view.message(f"{e.task_id} attempt {e.attempt} {e.result}: {e.reason}{again}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run the same careful way as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
