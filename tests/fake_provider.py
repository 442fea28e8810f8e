"""A whole provider in one file, as a third party would write one (docs/architecture.md, "Adding a
provider"): a compute backend whose worker threads run each attempt as a subprocess, and a store
that is one MemoryStore per home. tests/test_fake_provider.py registers it with register_provider,
runs the compute contract on it, and runs a job file on it end to end.

It uses only shardrun.core (and the MemoryStore): the task contract's environment, the key layout
and the argv placeholders are the same helpers the built-in backends use.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shardrun.core.compute import AttemptEvent, RunContext, TaskSpec
from shardrun.core.contract import base_environment, task_environment
from shardrun.core.errors import JobFileError
from shardrun.core.layout import log_key
from shardrun.core.plugins import render_argv
from shardrun.core.provider import Cost, GcRequest, Leftover, ProviderEntry
from shardrun.core.secrets import SecretSource
from shardrun.core.spec import JobSpec
from shardrun.core.store import Store
from shardrun.providers.local.memory import MemoryStore

NAME = "fake"
COMPUTE = "fake-threads"
STORE = "fake-memory"
ENTRY = ProviderEntry(NAME, "tests.fake_provider:PROVIDER", computes=(COMPUTE,), stores=(STORE,))
POLL = 0.05  # seconds between looks at a running attempt (stop, timeout)


@dataclass(frozen=True)
class Ended:
    """How an attempt ended; `retry` False ends the task whatever retries are left."""

    result: str
    exit_code: int | None
    reason: str | None
    size: int | None = None
    retry: bool = True


class ThreadBackend:
    """`concurrency` threads take tasks from a queue and run their attempts one after another."""

    name = COMPUTE
    detaches = False  # stop() ends the attempts: they are this process's children

    def __init__(self, kill_grace: float = 1.0) -> None:
        self.kill_grace = kill_grace
        self._ctx: RunContext | None = None
        self._todo: queue.SimpleQueue[TaskSpec | None] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[AttemptEvent] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._shared: dict[str, Path] = {}  # key -> local copy of the config and [app] files

    def start(self, ctx: RunContext) -> None:
        self._ctx = ctx
        shared = ctx.scratch / "shared"
        for key in (*([ctx.config_key] if ctx.config_key else []), *ctx.file_keys):
            self._shared[key] = shared / key.rsplit("/", 1)[-1]
            ctx.store.get_file(key, self._shared[key])
        for i in range(ctx.concurrency):
            worker = threading.Thread(target=self._work, args=(f"fake-{i + 1}",), daemon=True)
            worker.start()
            self._workers.append(worker)

    def submit(self, tasks: Sequence[TaskSpec]) -> None:
        for task in tasks:
            self._todo.put(task)

    def events(self, timeout: float) -> list[AttemptEvent]:
        try:
            out = [self._events.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self._events.empty():
            out.append(self._events.get_nowait())
        return out

    def stop(self) -> None:
        self._stopping.set()
        while not self._todo.empty():
            self._todo.get_nowait()

    def close(self) -> None:
        for _ in self._workers:
            self._todo.put(None)
        for worker in self._workers:
            worker.join(timeout=self.kill_grace + 5)
        self._workers.clear()

    def notices(self) -> list[str]:
        return []

    # -- one worker ---------------------------------------------------------------------------------
    def _work(self, worker: str) -> None:
        assert self._ctx is not None
        retries = self._ctx.retries
        while (task := self._todo.get()) is not None and not self._stopping.is_set():
            last = task.first_attempt + retries
            for attempt in range(task.first_attempt, last + 1):
                try:
                    end = self._attempt(task, attempt, worker)
                except Exception as err:  # storage trouble fails the attempt, never the worker
                    end = Ended("failed", None, f"{type(err).__name__}: {err}")
                final = attempt == last or not end.retry
                self._events.put(AttemptEvent(task.task_id, attempt, "finished", time.time(), worker,
                                              result=end.result, exit_code=end.exit_code,
                                              reason=end.reason, output_size=end.size, final=final))
                if final or self._stopping.is_set():
                    break

    def _attempt(self, task: TaskSpec, attempt: int, worker: str) -> Ended:
        ctx = self._ctx
        assert ctx is not None
        task_dir = ctx.scratch / "tasks" / f"{task.task_id}.{attempt}"
        shutil.rmtree(task_dir, ignore_errors=True)
        wd = task_dir / "wd"
        wd.mkdir(parents=True)
        input_path = wd / task.input_key.rstrip("/").rsplit("/", 1)[-1]
        if task.input_key.endswith("/"):
            for obj in ctx.store.list(task.input_key):
                ctx.store.get_file(obj.key, input_path / obj.key[len(task.input_key):])
            input_path.mkdir(exist_ok=True)
        else:
            ctx.store.get_file(task.input_key, input_path)
        output_path = wd / task.output_key.rsplit("/", 1)[-1]
        config = self._shared.get(ctx.config_key or "")
        for key in ctx.file_keys:
            (wd / self._shared[key].name).symlink_to(self._shared[key])
        env = base_environment() | task_environment(
            run_id=ctx.run_id, task_id=task.task_id, attempt=attempt, input_path=input_path,
            output_path=output_path, config_path=config, task_dir=task_dir, working_dir=wd,
            shared_dir=ctx.scratch / "shared", node_root=ctx.scratch, node_id=worker,
            pool_id=NAME, extra=ctx.env)
        argv = render_argv(ctx.command or [], {"input": str(input_path), "output": str(output_path),
                                               "config": str(config or "")})
        logs = {stream: task_dir / f"{stream}.txt" for stream in ("stdout", "stderr")}
        proc: subprocess.Popen[bytes] | None = None
        stopped: str | None = None
        with logs["stdout"].open("wb") as out, logs["stderr"].open("wb") as err:
            try:
                proc = subprocess.Popen(argv, cwd=wd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=err, start_new_session=True)
            except OSError as e:
                err.write(f"cannot start {argv[0]!r}: {e.strerror}\n".encode())
        if proc is not None:
            self._events.put(AttemptEvent(task.task_id, attempt, "started", time.time(), worker,
                                          pid=proc.pid))
            stopped = self._wait(proc, time.monotonic() + ctx.timeout if ctx.timeout else None)
        for stream, path in logs.items():  # every log, even an empty one
            ctx.store.put_file(log_key(ctx.run_id, task.task_id, attempt, stream), path)
        if proc is None:
            return Ended("failed", None, f"cannot start {argv[0]!r}", retry=False)
        code = proc.returncode
        if stopped == "timeout":
            return Ended("timeout", code, f"timed out after {ctx.timeout:g}s")
        if stopped == "interrupted":
            return Ended("interrupted", code, "stopped by the user", retry=False)
        if code != 0:
            return Ended("failed", code, f"exit code {code}")
        if not output_path.is_file():
            return Ended("failed", 0, "exited 0 but wrote nothing at OUTPUT_PATH")
        return Ended("succeeded", 0, None, ctx.store.put_file(task.output_key, output_path, move=True),
                     retry=False)

    def _wait(self, proc: subprocess.Popen[bytes], deadline: float | None) -> str | None:
        """Wait for the attempt; end it on stop or at its deadline. -> None, interrupted or timeout."""
        ended: str | None = None
        term_at: float | None = None
        # Exited but not reaped (WNOWAIT), so its group id stays ours while we signal the group.
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if ended is None and self._stopping.is_set():
                ended = "interrupted"
            elif ended is None and deadline is not None and time.monotonic() >= deadline:
                ended = "timeout"
            if ended is not None and term_at is None:
                term_at = time.monotonic()
                _signal_group(proc.pid, signal.SIGTERM)
            elif term_at is not None and time.monotonic() - term_at >= self.kill_grace:
                _signal_group(proc.pid, signal.SIGKILL)
            time.sleep(POLL)
        _signal_group(proc.pid, signal.SIGKILL)  # what the app left running in the background
        proc.wait()
        return ended


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class FakeProvider:
    """Every member of shardrun.core.provider.Provider; nothing here costs money or makes resources."""

    name = NAME
    computes: tuple[str, ...] = (COMPUTE,)
    stores: tuple[str, ...] = (STORE,)
    secret_sources: tuple[str, ...] = ()
    sections: Mapping[str, type[BaseModel]] = {}

    def __init__(self) -> None:
        self.stores_by_home: dict[Path, MemoryStore] = {}  # one per home, as a folder would be
        self.backends: list[ThreadBackend] = []

    def check_job(self, spec: JobSpec, *, fetch_image: bool) -> None:
        if spec.run.runtime not in ("auto", "process"):
            raise JobFileError(f"{spec.source}: [run] runtime: {COMPUTE!r} runs processes only")

    def preflight(self, spec: JobSpec, store: Store) -> None:
        pass

    def open_merge(self, name: str, spec: JobSpec) -> None:
        return None  # threads on this machine: the client merges

    def open_compute(self, name: str, spec: JobSpec) -> ThreadBackend:
        backend = ThreadBackend()
        self.backends.append(backend)
        return backend

    def open_store(self, name: str, spec: JobSpec | None, home: Path) -> Store:
        return self.stores_by_home.setdefault(home, MemoryStore())

    def open_secrets(self, name: str, section: Any, base_dir: Path) -> SecretSource:
        raise JobFileError(f"the {NAME} provider has no secret source {name!r}")

    def cleanup(self, spec: JobSpec, resources: Sequence[tuple[str, str]],
                on_deleted: Callable[[str, str], None]) -> list[str]:
        return []

    def collect_leftovers(self, request: GcRequest) -> list[tuple[Leftover, bool]]:
        return []

    def cost(self, spec: JobSpec, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost | None:
        return None


PROVIDER = FakeProvider()
