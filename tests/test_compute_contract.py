"""One contract for every compute backend: events, retries, timeouts, stop, outputs and logs.

Add a backend to BACKENDS and it must pass all of this unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shardrun.core import layout
from shardrun.core.compute import AttemptEvent, ComputeBackend, RunContext, TaskSpec
from shardrun.core.store import Store
from shardrun.providers.local.memory import MemoryStore
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.store import LocalStore

from .helpers import PY

BACKENDS: dict[str, Callable[[], ComputeBackend]] = {
    "local-process": lambda: LocalBackend("process", kill_grace=1.0),
}
STORES: dict[str, Callable[[Path], Store]] = {
    "local": lambda tmp: LocalStore(tmp / "store"),
    "memory": lambda tmp: MemoryStore(),
}
RUN = "contract-261125-abcdef"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> ComputeBackend:
    return BACKENDS[request.param]()


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return STORES[request.param](tmp_path)


def tasks(store: Store, n: int, first_attempt: int = 1) -> list[TaskSpec]:
    out = []
    for i in range(1, n + 1):
        tid = layout.task_id(i, n)
        store.put_bytes(layout.input_key(RUN, tid, "in.txt"), f"input {i}\n".encode())
        out.append(TaskSpec(tid, layout.input_key(RUN, tid, "in.txt"),
                            layout.output_key(RUN, tid, "out.txt"), first_attempt))
    return out


def drive(backend: ComputeBackend, ctx: RunContext, specs: list[TaskSpec],
          stop_after: float | None = None) -> list[AttemptEvent]:
    backend.start(ctx)
    events: list[AttemptEvent] = []
    try:
        backend.submit(specs)
        open_ids = {t.task_id for t in specs}
        deadline = time.monotonic() + 60
        started = time.monotonic()
        while open_ids and time.monotonic() < deadline:
            if stop_after is not None and time.monotonic() - started > stop_after:
                backend.stop()
                stop_after = None
            batch = backend.events(0.1)
            events += batch
            open_ids -= {e.task_id for e in batch if e.kind == "finished" and e.final}
        assert not open_ids, f"tasks never finished: {open_ids}"
    finally:
        backend.close()
    return events


def context(tmp_path: Path, store: Store, code: str, **kw: object) -> RunContext:
    return RunContext(run_id=RUN, command=[PY, "-c", code, "{input}", "{output}"], store=store,
                      scratch=tmp_path / "scratch", **kw)  # type: ignore[arg-type]


COPY = "import sys, shutil; print('hello'); shutil.copyfile(sys.argv[1], sys.argv[2])"


def test_success_stores_output_and_logs(backend: ComputeBackend, store: Store, tmp_path: Path) -> None:
    specs = tasks(store, 3)
    events = drive(backend, context(tmp_path, store, COPY, concurrency=2), specs)
    for t in specs:
        mine = [e for e in events if e.task_id == t.task_id]
        assert [e.kind for e in mine] == ["started", "finished"]
        assert mine[1].result == "succeeded" and mine[1].final and mine[1].exit_code == 0
        assert mine[1].output_size == len(store.get_bytes(t.output_key))
        assert store.get_bytes(t.output_key) == store.get_bytes(t.input_key)
        assert store.get_bytes(layout.log_key(RUN, t.task_id, 1, "stdout")) == b"hello\n"
        assert store.size(layout.log_key(RUN, t.task_id, 1, "stderr")) is None  # empty: not stored


def test_retries_number_attempts_and_only_the_last_is_final(backend: ComputeBackend, store: Store,
                                                            tmp_path: Path) -> None:
    specs = tasks(store, 1, first_attempt=4)
    code = "import sys, os; print('attempt', os.environ['SHARDRUN_ATTEMPT'], file=sys.stderr); sys.exit(5)"
    events = drive(backend, context(tmp_path, store, code, retries=2), specs)
    finished = [e for e in events if e.kind == "finished"]
    assert [(e.attempt, e.result, e.exit_code, e.final) for e in finished] == [
        (4, "failed", 5, False), (5, "failed", 5, False), (6, "failed", 5, True)]
    assert store.get_bytes(layout.log_key(RUN, specs[0].task_id, 5, "stderr")) == b"attempt 5\n"
    assert store.size(specs[0].output_key) is None


def test_no_output_is_a_failure(backend: ComputeBackend, store: Store, tmp_path: Path) -> None:
    specs = tasks(store, 1)
    events = drive(backend, context(tmp_path, store, "pass", retries=0), specs)
    last = events[-1]
    assert last.result == "failed" and last.exit_code == 0 and "OUTPUT_PATH" in (last.reason or "")


def test_timeout(backend: ComputeBackend, store: Store, tmp_path: Path) -> None:
    specs = tasks(store, 1)
    events = drive(backend, context(tmp_path, store, "import time; time.sleep(60)", retries=0,
                                    timeout=0.5), specs)
    assert [(e.result, e.final) for e in events if e.kind == "finished"] == [("timeout", True)]


def test_stop_ends_running_attempts(backend: ComputeBackend, store: Store, tmp_path: Path) -> None:
    specs = tasks(store, 4)
    events = drive(backend, context(tmp_path, store, "import time; time.sleep(60)", concurrency=2),
                   specs[:2], stop_after=1.0)
    finished = [e for e in events if e.kind == "finished"]
    assert {e.result for e in finished} == {"interrupted"}
    assert all(e.final for e in finished)


def test_missing_program_fails_without_retries(backend: ComputeBackend, store: Store, tmp_path: Path) -> None:
    specs = tasks(store, 1)
    ctx = RunContext(run_id=RUN, command=["/no/such/program", "{input}"], store=store,
                     scratch=tmp_path / "scratch", retries=3)
    events = drive(backend, ctx, specs)
    finished = [e for e in events if e.kind == "finished"]
    assert len(finished) == 1 and finished[0].final and "cannot start" in (finished[0].reason or "")


def test_storage_trouble_fails_the_attempt_not_the_run(backend: ComputeBackend, tmp_path: Path) -> None:
    class BrokenOutputs(MemoryStore):
        def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
            if "/outputs/" in key:
                raise OSError(28, "No space left on device")
            return super().put_file(key, src, move=move)

    store = BrokenOutputs()
    specs = tasks(store, 2)
    events = drive(backend, context(tmp_path, store, COPY, retries=1), specs)
    finished = [e for e in events if e.kind == "finished"]
    assert len(finished) == 4 and [e.final for e in finished].count(True) == 2
    assert all(e.result == "failed" and "No space left on device" in (e.reason or "") for e in finished)
