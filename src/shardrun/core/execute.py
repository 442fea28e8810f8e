"""Running a recorded run's tasks: the compute backend's events go into the ledger, then the merge.

Before the merge every succeeded task's stored output is checked (it exists, with its recorded
size); a lost output sends its task back to run again instead of failing the merge. The ledger is
written only from the main thread.
"""

from __future__ import annotations

import time

from shardrun.core import layout
from shardrun.core.compute import AttemptEvent, ComputeBackend, RunContext, TaskSpec
from shardrun.core.errors import RunInterrupted, ShardrunError
from shardrun.core.ledger import AttemptEnd, Ledger, TaskRow
from shardrun.core.outcome import RunResult, finish
from shardrun.core.preflight import resolved_command
from shardrun.core.prepare import restore_sources
from shardrun.core.progress import NullProgress, ProgressView
from shardrun.core.run import Run
from shardrun.core.states import AttemptResult, RunState, TaskState

POLL = 0.2  # seconds between event polls; also the timeout check granularity
HEARTBEAT_EVERY = 60.0  # seconds between heartbeats where other machines see them (docs/storage.md)
COUNTS_EVERY = 0.25  # seconds between progress counts from the ledger (a query over every task)
ROUNDS = 3  # a lost output sends its task round again, at most this many times per command
SHOWN = 5  # lost outputs named one by one


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


def lost_outputs(run: Run) -> list[TaskRow]:
    """Succeeded tasks whose stored output is gone, or is not the size the ledger recorded."""
    stored = {o.key: o.size for o in run.store.list(f"{run.run_id}/outputs/")}
    return [t for t in run.ledger.tasks(run.run_id, TaskState.SUCCEEDED)
            if stored.get(t.output_key) is None
            or (t.output_size is not None and stored[t.output_key] != t.output_size)]


def send_back(run: Run, lost: list[TaskRow], view: ProgressView) -> None:
    """Tasks whose outputs are lost wait to run again; the user hears which."""
    for t in lost[:SHOWN]:
        view.message(f"output of {t.task_id} is gone from the store; it runs again")
    if len(lost) > SHOWN:
        view.message(f"... and the outputs of {len(lost) - SHOWN} more tasks; they run again")
    run.ledger.set_task_state(run.run_id, [t.task_id for t in lost], TaskState.PENDING)


def execute(run: Run, *, progress: ProgressView | None = None, resumed: bool = False,
            recovered: bool = False) -> RunResult:
    """Run every pending task of a recorded run to completion, check the outputs, then merge.

    `recovered`: the caller already made the ledger true (retry does, before it picks tasks).
    """
    started = time.monotonic()
    view = progress or NullProgress()
    if run.state != RunState.RUNNING:
        run.set_state(RunState.RUNNING)
    if not recovered:
        recover(run)
    counts = run.ledger.counts(run.run_id)
    view.start(run.run_id, sum(counts.values()), counts)
    for _ in range(ROUNDS):
        pending = run.ledger.tasks(run.run_id, TaskState.PENDING)
        if any(t.segments is not None for t in pending):
            restore_sources(run, view)  # the tasks cut their pieces from them
        if pending:
            _run_tasks(run, pending, view)
        lost = lost_outputs(run)
        if not lost:
            break
        send_back(run, lost, view)
    else:
        raise ShardrunError(f"run {run.run_id}: outputs keep disappearing from the store "
                            f"({len(lost)} after {ROUNDS} rounds); check the storage account")
    view.close()
    return finish(run, started=started, resumed=resumed, say=view.message)


def _context(run: Run, pending: list[TaskRow]) -> RunContext:
    spec, ledger, run_id = run.spec, run.ledger, run.run_id

    def on_resource(kind: str, resource_id: str, deleted: bool) -> None:
        if deleted:
            ledger.resource_deleted(run_id, kind, resource_id)
        else:
            ledger.add_resource(run_id, kind, resource_id)

    return RunContext(
        run_id=run_id,
        command=resolved_command(spec),
        store=run.store,
        scratch=run.scratch,
        env=dict(spec.app.env),
        config_key=layout.config_key(run_id, spec.app.config.name) if spec.app.config else None,
        file_keys=tuple(layout.file_key(run_id, f.name) for f in spec.app.files),
        retries=spec.run.retries,
        timeout=spec.run.timeout,
        concurrency=min(spec.concurrency, max(1, len(pending))),
        stdout_output=spec.app.stdout == "output",
        resources=tuple(ledger.resources(run_id)),
        resources_ever=tuple(ledger.resources(run_id, live_only=False)),
        on_resource=on_resource,
    )


def _run_tasks(run: Run, pending: list[TaskRow], view: ProgressView) -> None:
    """One round: submit the pending tasks and record their events until each has ended."""
    ledger, run_id = run.ledger, run.run_id
    backend = run.compute_provider.open_compute(run.row.backend, run.spec)
    ctx = _context(run, pending)
    try:
        backend.start(ctx)
        backend.submit([TaskSpec(t.task_id, t.input_key, t.output_key, t.attempts + 1, t.segments)
                        for t in pending])
        _follow(run, backend, {t.task_id for t in pending}, view)
    except KeyboardInterrupt:
        backend.stop()
        _record(ledger, run_id, backend.events(0), view)
        recover(run)
        run.set_state(RunState.INTERRUPTED, "stopped by the user")
        view.close()
        raise _interrupted(run, backend) from None
    finally:
        backend.close()
        for note in backend.notices():  # e.g. what could not be deleted at the end
            view.message(note)


def _follow(run: Run, backend: ComputeBackend, open_tasks: set[str], view: ProgressView) -> None:
    ledger, run_id = run.ledger, run.run_id
    run.beat()  # the run's container exists now (the pieces are in it)
    stale = False
    next_counts = 0.0
    counts = ledger.counts(run_id)
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
        if time.monotonic() - run.last_beat >= HEARTBEAT_EVERY:
            run.beat()


def _interrupted(run: Run, backend: ComputeBackend) -> RunInterrupted:
    job = run.row.job_path
    if backend.detaches:
        return RunInterrupted(
            f"detached from run {run.run_id}: its tasks go on on {run.row.backend}. Re-attach with: "
            f"shardrun run {job}; stop it and delete its resources with: "
            f"shardrun cleanup {run.run_id} --force")
    return RunInterrupted(f"run {run.run_id} stopped; finished tasks are kept. Resume with: "
                          f"shardrun run {job}")


def _record(ledger: Ledger, run_id: str, events: list[AttemptEvent], view: ProgressView) -> None:
    """One transaction for the whole batch, a few statements whatever its size."""
    started = [(e.task_id, e.attempt, e.worker, e.pid, e.time) for e in events if e.kind == "started"]
    ended = [AttemptEnd(e.task_id, e.attempt, e.time, e.exit_code, e.result, e.reason, e.worker,
                        e.stderr_tail, _task_state(e), e.output_size)
             for e in events if e.kind == "finished"]
    with ledger.transaction():
        ledger.record_attempts(run_id, started, ended)
    for e in events:
        if e.kind == "finished" and e.result not in (AttemptResult.SUCCEEDED, AttemptResult.INTERRUPTED):
            again = "" if e.final else ", retrying"
            view.message(f"{e.task_id} attempt {e.attempt} {e.result}: {e.reason}{again}")


def _task_state(e: AttemptEvent) -> TaskState | None:
    """The task's state after this attempt: decided by its final attempt, unless interrupted."""
    if not e.final or e.result == AttemptResult.INTERRUPTED:
        return None
    return TaskState.SUCCEEDED if e.result == AttemptResult.SUCCEEDED else TaskState.FAILED
