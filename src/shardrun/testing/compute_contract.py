"""The compute contract: what every compute backend must do, as a pytest suite to subclass.

Every backend must pass it (local processes, local containers, Azure Batch, a third party's)::

    from shardrun.testing.compute_contract import ComputeContract

    class TestMyBackend(ComputeContract):
        reports_pid = False  # only where the backend really differs; see the capabilities below

        @pytest.fixture
        def backend(self) -> ComputeBackend:
            return MyBackend()

        @pytest.fixture
        def store(self) -> Store:  # optional: a MemoryStore by default
            return MyStore()

The apps are /bin/sh scripts, so the suite runs wherever a POSIX shell does: on this machine, in a
busybox image, on a Batch node. Where a backend legitimately differs, its subclass says so with the
typed capabilities below (class attributes, strict by default); each test then checks what that
backend does instead. Nothing is skipped.

pytest is imported here only: this package is for test suites, and shardrun never imports it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from shardrun.core import layout
from shardrun.core.compute import AttemptEvent, ComputeBackend, RunContext, TaskSpec
from shardrun.core.store import Store
from shardrun.providers.local.memory import MemoryStore

SHELL = "/bin/sh"
COPY = 'echo hello; cat "$1" > "$2"'
FAIL = 'echo "attempt $SHARDRUN_ATTEMPT" >&2; exit 5'
NO_OUTPUT = "true"
SLEEP = "sleep 60"
# Stops promptly on SIGTERM even as a container's PID 1 (which ignores signals it does not trap).
SLEEP_UNTIL_STOPPED = 'trap "exit 143" TERM; sleep 60 & wait; cat "$1" > "$2"'
NAP_THEN_COPY = 'sleep 1; cat "$1" > "$2"'
MISSING_PROGRAM = "/no/such/program"


@dataclass(frozen=True)
class StorageTrouble:
    """A store the task outputs cannot be written to, and words every failed attempt's reason holds."""

    store: Store
    reason: str


class FullDiskStore(MemoryStore):
    """A MemoryStore whose disk is full for task outputs (the client writes them on local backends)."""

    def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        if "/outputs/" in key:
            raise OSError(28, "No space left on device")
        return super().put_file(key, src, move=move)


def put_tasks(store: Store, run_id: str, n: int, first_attempt: int = 1) -> list[TaskSpec]:
    """`n` tasks whose inputs are stored, as the pipeline stores them after the split."""
    out = []
    for i in range(1, n + 1):
        tid = layout.task_id(i, n)
        store.put_bytes(layout.input_key(run_id, tid, "in.txt"), f"input {i}\n".encode())
        out.append(TaskSpec(tid, layout.input_key(run_id, tid, "in.txt"),
                            layout.output_key(run_id, tid, "out.txt"), first_attempt))
    return out


def drive(backend: ComputeBackend, ctx: RunContext, specs: Sequence[TaskSpec], *, stop: bool = False,
          patience: float = 60.0, settle: float = 1.0) -> list[AttemptEvent]:
    """Run `specs` as the pipeline does and return every event, once each task had its final one.

    With `stop`, backend.stop() is called as on Ctrl-C: `settle` seconds after every task started,
    or at once on a backend that detaches (it may report starts only when tasks end).
    """
    backend.start(ctx)
    events: list[AttemptEvent] = []
    try:
        backend.submit(specs)
        waiting = {t.task_id for t in specs}
        unstarted = set(waiting)
        stop_at: float | None = None
        if stop and backend.detaches:
            backend.stop()
            stop = False
        deadline = time.monotonic() + patience
        while waiting and time.monotonic() < deadline:
            if stop and not unstarted and stop_at is None:
                stop_at = time.monotonic() + settle
            if stop_at is not None and time.monotonic() >= stop_at:
                backend.stop()
                stop, stop_at = False, None
            batch = backend.events(0.1)
            events += batch
            unstarted -= {e.task_id for e in batch if e.kind == "started"}
            waiting -= {e.task_id for e in batch if e.kind == "finished" and e.final}
        assert not waiting, f"tasks never finished: {sorted(waiting)}"
    finally:
        backend.close()
    return events


def finished(events: Sequence[AttemptEvent], task_id: str | None = None) -> list[AttemptEvent]:
    return [e for e in events if e.kind == "finished" and task_id in (None, e.task_id)]


class ComputeContract:
    """The suite. Override `backend` (and `store` when the backend needs its own)."""

    # -- typed capabilities: where a backend legitimately differs ----------------------------------
    reports_pid: ClassVar[bool] = True
    """Started events carry the attempt's local pid (False where it runs on another machine)."""
    reports_output_size: ClassVar[bool] = True
    """A succeeded attempt's event carries its output's size (False: the client asks the store)."""
    stores_empty_logs: ClassVar[bool] = False
    """An empty stdout/stderr is stored as an empty object, not left out (Batch uploads every log)."""
    sees_each_attempt: ClassVar[bool] = True
    """Every attempt has its own SHARDRUN_ATTEMPT, exit code and logs. False where the service retries
    on its own and reports the last attempt only (Azure Batch: docs/task-contract.md)."""
    refuses_missing_program: ClassVar[bool] = True
    """A program that cannot start fails the task at once, with no retries: refused at the start
    ("cannot start ..."), or its exit 127 from a container engine is not retried. False where the
    service retries exit 127 like any exit (a Batch node's shell)."""
    retries_failed_uploads: ClassVar[bool] = True
    """An attempt whose output cannot be stored is retried like any failure. False on Batch: the
    service does not retry an output-upload failure."""
    no_output_exit_code: ClassVar[int] = 0
    """The exit code reported when the app exits 0 but writes no output (Batch: the task script's)."""
    patience: ClassVar[float] = 60.0
    """Seconds a test waits for its tasks to finish before it fails."""

    # -- fixtures a backend's suite overrides ------------------------------------------------------
    @pytest.fixture
    def backend(self) -> ComputeBackend:
        raise NotImplementedError(f"{type(self).__name__} must override the `backend` fixture")

    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()

    @pytest.fixture
    def storage_trouble(self) -> StorageTrouble:
        """Override where task outputs reach the store another way (a Batch node uploads them)."""
        return StorageTrouble(FullDiskStore(), "No space left on device")

    @pytest.fixture
    def run_id(self) -> str:
        return layout.new_run_id("contract")  # fresh per test: runs never share a namespace

    # -- helpers -----------------------------------------------------------------------------------
    def context(self, store: Store, run_id: str, scratch: Path, script: str, *, retries: int = 3,
                timeout: float | None = None, concurrency: int = 1) -> RunContext:
        """A run whose app is the shell `script`, given the input and output paths as $1 and $2."""
        return RunContext(run_id=run_id, command=[SHELL, "-c", script, "sh", "{input}", "{output}"],
                          store=store, scratch=scratch, retries=retries, timeout=timeout,
                          concurrency=concurrency)

    def drive(self, backend: ComputeBackend, ctx: RunContext, specs: Sequence[TaskSpec], *,
              stop: bool = False) -> list[AttemptEvent]:
        return drive(backend, ctx, specs, stop=stop, patience=self.patience)

    # -- the contract ------------------------------------------------------------------------------
    def test_success_stores_output_and_logs(self, backend: ComputeBackend, store: Store, run_id: str,
                                            tmp_path: Path) -> None:
        specs = put_tasks(store, run_id, 3)
        events = self.drive(backend, self.context(store, run_id, tmp_path, COPY, concurrency=2), specs)
        for t in specs:
            mine = [e for e in events if e.task_id == t.task_id]
            assert [(e.kind, e.attempt) for e in mine] == [("started", 1), ("finished", 1)]
            start, end = mine
            assert end.result == "succeeded" and end.final and end.exit_code == 0 and end.reason is None
            assert start.worker and start.time <= end.time  # where and when it ran
            assert (start.pid is not None) == self.reports_pid
            output = store.get_bytes(t.output_key)
            assert output == store.get_bytes(t.input_key)
            assert end.output_size == (len(output) if self.reports_output_size else None)
            assert store.get_bytes(layout.log_key(run_id, t.task_id, 1, "stdout")) == b"hello\n"
            empty_log = store.size(layout.log_key(run_id, t.task_id, 1, "stderr"))
            assert empty_log == (0 if self.stores_empty_logs else None)

    def test_retries_number_attempts_and_only_the_last_is_final(
        self, backend: ComputeBackend, store: Store, run_id: str, tmp_path: Path,
    ) -> None:
        specs = put_tasks(store, run_id, 1, first_attempt=4)  # a resumed task: numbers go on
        events = self.drive(backend, self.context(store, run_id, tmp_path, FAIL, retries=2), specs)
        ends = finished(events)
        assert [(e.attempt, e.result, e.final) for e in ends] == [
            (4, "failed", False), (5, "failed", False), (6, "failed", True)]
        assert ends[-1].exit_code == 5 and "5" in (ends[-1].reason or "")
        tid = specs[0].task_id
        last_log = store.get_bytes(layout.log_key(run_id, tid, 6, "stderr"))
        if self.sees_each_attempt:
            assert [e.exit_code for e in ends] == [5, 5, 5]
            assert store.get_bytes(layout.log_key(run_id, tid, 5, "stderr")) == b"attempt 5\n"
            assert last_log == b"attempt 6\n"
        else:  # the earlier attempts' details are the service's; the last one's logs are kept
            assert all(e.exit_code in (None, 5) for e in ends[:-1])
            assert last_log.startswith(b"attempt ")
        assert store.size(specs[0].output_key) is None

    def test_no_output_is_a_failure(self, backend: ComputeBackend, store: Store, run_id: str,
                                    tmp_path: Path) -> None:
        specs = put_tasks(store, run_id, 1)
        events = self.drive(backend, self.context(store, run_id, tmp_path, NO_OUTPUT, retries=0), specs)
        [last] = finished(events)
        assert last.result == "failed" and last.final and last.exit_code == self.no_output_exit_code
        assert "OUTPUT_PATH" in (last.reason or "")
        assert store.size(specs[0].output_key) is None

    def test_timeout(self, backend: ComputeBackend, store: Store, run_id: str, tmp_path: Path) -> None:
        specs = put_tasks(store, run_id, 1)
        ctx = self.context(store, run_id, tmp_path, SLEEP, retries=0, timeout=0.5)
        events = self.drive(backend, ctx, specs)
        assert [(e.result, e.final) for e in finished(events)] == [("timeout", True)]
        assert "timed out" in (finished(events)[0].reason or "")

    def test_stop_ends_or_detaches_running_attempts(self, backend: ComputeBackend, store: Store,
                                                     run_id: str, tmp_path: Path) -> None:
        specs = put_tasks(store, run_id, 2)
        script = NAP_THEN_COPY if backend.detaches else SLEEP_UNTIL_STOPPED
        events = self.drive(backend, self.context(store, run_id, tmp_path, script, concurrency=2),
                            specs, stop=True)
        ends = finished(events)
        assert sorted(e.task_id for e in ends) == [t.task_id for t in specs] and all(e.final for e in ends)
        if backend.detaches:  # Ctrl-C leaves them running where they run; they are still reported
            assert {e.result for e in ends} == {"succeeded"}
        else:  # ended now, and an interrupted attempt does not count against the retries
            assert {e.result for e in ends} == {"interrupted"}
            assert all(store.size(t.output_key) is None for t in specs)

    def test_missing_program_fails_the_task(self, backend: ComputeBackend, store: Store, run_id: str,
                                            tmp_path: Path) -> None:
        specs = put_tasks(store, run_id, 1)
        ctx = RunContext(run_id=run_id, command=[MISSING_PROGRAM, "{input}"], store=store,
                         scratch=tmp_path, retries=2)
        ends = finished(self.drive(backend, ctx, specs))
        last = ends[-1]
        assert last.result == "failed" and last.final and [e.final for e in ends].count(True) == 1
        if self.refuses_missing_program:  # refused at the start, or exit 127 not retried
            reason = last.reason or ""
            assert len(ends) == 1 and ("cannot start" in reason or "not retried" in reason)
        else:  # the program's starter fails like an app would, and the failure is retried
            assert [e.attempt for e in ends] == [1, 2, 3]
        stderr = store.get_bytes(layout.log_key(run_id, specs[0].task_id, last.attempt, "stderr"))
        assert MISSING_PROGRAM.encode() in stderr  # the log says what could not start

    def test_storage_trouble_fails_the_attempt_not_the_run(
        self, backend: ComputeBackend, storage_trouble: StorageTrouble, run_id: str, tmp_path: Path,
    ) -> None:
        store = storage_trouble.store
        specs = put_tasks(store, run_id, 2)
        events = self.drive(backend, self.context(store, run_id, tmp_path, COPY, retries=1), specs)
        ends = finished(events)
        per_task = 2 if self.retries_failed_uploads else 1
        assert sorted(e.task_id for e in ends) == sorted(t.task_id for t in specs for _ in range(per_task))
        assert [e.final for e in ends].count(True) == 2
        assert all(e.result == "failed" and storage_trouble.reason in (e.reason or "") for e in ends)
