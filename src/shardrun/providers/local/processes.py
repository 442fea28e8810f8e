"""The local backend: task attempts on this machine, `concurrency` at a time.

Each worker thread takes a task, runs its attempts one after another until one succeeds or the
retries are spent, and reports AttemptEvents. Timeouts are enforced from `events()`, which the
client calls several times a second, so no thread per attempt is needed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.core.compute import AttemptEvent, RunContext, TaskSpec
from shardrun.core.contract import base_environment, task_environment
from shardrun.core.errors import ShardrunError
from shardrun.core.layout import log_key
from shardrun.core.plugins import render_argv, tail
from shardrun.core.store import GrantsTaskAccess, TaskAccess
from shardrun.providers.local.container import open_runtime
from shardrun.providers.local.runtime import ContainerSettings, Launched, Runtime
from shardrun.providers.local.slots import Slot, enter, remove_task_dir

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
KILL_RETRY_SECONDS = 30.0  # how long stop() keeps sending SIGKILL to attempts that have not ended
TAIL_BYTES, TAIL_LINES = 4096, 5  # the end of a failed attempt's stderr that the ledger keeps
GATHER = 0.02  # seconds events() keeps collecting after the first event
NODE_ID = "local-node"


@dataclass
class _Running:
    handle: Launched
    deadline: float | None
    timed_out: bool = False
    term_sent_at: float | None = None


class LocalBackend:
    name = "local"

    detaches = False  # Ctrl-C stops the attempts: they run in this client's process group

    def __init__(self, runtime: str | Runtime = "process", kill_grace: float = KILL_GRACE, *,
                 containers: ContainerSettings | None = None) -> None:
        self.runtime = open_runtime(runtime) if isinstance(runtime, str) else runtime
        self.containers = containers
        self.kill_grace = kill_grace
        self._todo: queue.SimpleQueue[TaskSpec | None] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[AttemptEvent] = queue.SimpleQueue()
        self._carry: list[AttemptEvent] = []
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._ctx: RunContext | None = None
        self._config_path: Path | None = None
        self._file_paths: list[Path] = []
        self._base_env: dict[str, str] = {}
        self._tasks_dir = Path()
        self._shared_dir = Path()
        self._access: GrantsTaskAccess | None = None
        self._slots: dict[str, Slot] = {}  # per worker: its last clean task folder, for reuse

    # -- ComputeBackend -------------------------------------------------------------------------
    def start(self, ctx: RunContext) -> None:
        self._ctx = ctx
        # once, not per attempt: isinstance against a runtime Protocol is slow
        self._access = ctx.store if isinstance(ctx.store, GrantsTaskAccess) else None
        shared = self._shared_dir = ctx.scratch / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        self._tasks_dir = ctx.scratch / "tasks"
        self._tasks_dir.mkdir(exist_ok=True)
        if ctx.config_key:
            self._config_path = self._materialize(ctx.config_key, shared / "config")
        self._file_paths = [self._materialize(k, shared / "files") for k in ctx.file_keys]
        # A container gets the contract variables only: its image has its own PATH, HOME, ...
        self._base_env = {} if self.runtime.isolated else base_environment()
        kill_strays(ctx.run_id)  # a resumed run must not race attempts of the dead client
        # container runtimes: check the image, remove a dead client's containers
        self.runtime.prepare(ctx.run_id, self.containers)
        for i in range(ctx.concurrency):
            worker = threading.Thread(
                target=self._work, args=(f"local-{i + 1}",), name=f"shardrun-w{i + 1}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def submit(self, tasks: Sequence[TaskSpec]) -> None:
        for task in tasks:
            self._todo.put(task)

    def events(self, timeout: float) -> list[AttemptEvent]:
        self._enforce_deadlines()
        out, self._carry = self._carry, []
        try:
            if not out:
                out.append(self._out.get(timeout=timeout))
                # Let what else arrives shortly gather: the client records a batch in one ledger
                # transaction, and short tasks would otherwise cost a commit each. A sleep, not a
                # wait per event: each wake-up would compete with the workers for the GIL.
                time.sleep(GATHER)
            while True:
                out.append(self._out.get(timeout=0))
        except queue.Empty:
            pass
        except KeyboardInterrupt:
            self._carry = out  # taken off the queue: hand them over on the next call
            raise
        return out

    def stop(self) -> None:
        self._stopping.set()
        try:
            while True:
                self._todo.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            handles = [r.handle for r in self._running.values()]
        for h in handles:
            h.terminate()
        deadline = time.monotonic() + self.kill_grace
        while time.monotonic() < deadline and any(w.is_alive() for w in self._workers):
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.05)
        # SIGKILL until every attempt has ended: a container still being created when the first
        # one came cannot be killed yet (`podman kill` refuses it), so it is sent again (bounded).
        give_up = time.monotonic() + KILL_RETRY_SECONDS
        while True:
            with self._lock:
                handles = [r.handle for r in self._running.values()]
            if not handles or time.monotonic() >= give_up:
                break
            for h in handles:
                h.kill()
            time.sleep(0.2)

    def notices(self) -> list[str]:
        return []

    def close(self) -> None:
        for _ in self._workers:
            self._todo.put(None)
        for w in self._workers:
            w.join(timeout=self.kill_grace + 5)
        self._workers.clear()
        self._discard_slots()

    # -- internals ------------------------------------------------------------------------------
    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            running = list(self._running.values())
        for r in running:
            if r.deadline is not None and now >= r.deadline and r.term_sent_at is None:
                r.timed_out = True
                r.term_sent_at = now
                r.handle.terminate()
            elif r.term_sent_at is not None and now - r.term_sent_at >= self.kill_grace:
                r.handle.kill()

    def _materialize(self, key: str, folder: Path) -> Path:
        ctx = self._ctx
        assert ctx is not None
        local = self._local_path(key)
        if local is not None:
            return local
        dest = folder / key.rsplit("/", 1)[-1]
        if self._access is not None:  # like a Batch node: a read-only URL, never the key
            self._access.fetch_shared(key, dest, ctx.timeout)
            return dest
        ctx.store.get_file(key, dest)
        return dest

    def _work(self, worker: str) -> None:
        ctx = self._ctx
        assert ctx is not None
        while True:
            task = self._todo.get()
            if task is None or self._stopping.is_set():
                return
            last = task.first_attempt + ctx.retries
            for attempt in range(task.first_attempt, last + 1):
                try:
                    event = self._attempt(ctx, task, attempt, worker, final_try=attempt == last)
                except Exception as e:  # trouble fails the attempt, never the worker
                    # (a dead worker would leave its task open forever and hang the run)
                    reason = str(e) if isinstance(e, ShardrunError) else f"{type(e).__name__}: {e}"
                    event = AttemptEvent(task.task_id, attempt, "finished", time.time(), worker,
                                         result="failed", reason=reason, final=attempt == last)
                self._out.put(event)
                if event.final or self._stopping.is_set():
                    break

    def _attempt(
        self, ctx: RunContext, task: TaskSpec, attempt: int, worker: str, final_try: bool
    ) -> AttemptEvent:
        task_dir = self._tasks_dir / f"{task.task_id}.{attempt}"
        slot = enter(self._slots.pop(worker, None), task_dir, logs=("stderr",) if ctx.stdout_output
                      else ("stdout", "stderr"))
        try:
            event = self._run_attempt(ctx, task, attempt, worker, final_try, slot)
        except BaseException:
            slot.close()  # the folder stays, as a failed attempt's does
            raise
        if event.result != "succeeded":
            slot.close()  # a failed attempt's folder is kept for inspection
        elif slot.reusable():
            self._slots[worker] = slot  # the next attempt renames it: no folders made or removed
        else:
            slot.close()
            remove_task_dir(task_dir)
        return event

    def _run_attempt(self, ctx: RunContext, task: TaskSpec, attempt: int, worker: str,
                     final_try: bool, slot: Slot) -> AttemptEvent:
        task_dir = slot.dir
        wd = task_dir / "wd"
        transfer = self._transfer(ctx, task, attempt)
        input_path = transfer.fetch_input(wd) if transfer else self._input(ctx, task, wd)
        output_path = wd / task.output_key.rsplit("/", 1)[-1]
        for f in self._file_paths:
            (wd / f.name).symlink_to(f)
        token = f"{task.task_id}/{attempt}"
        env = self._base_env | task_environment(
            run_id=ctx.run_id, task_id=task.task_id, attempt=attempt, input_path=input_path,
            output_path=output_path, config_path=self._config_path, task_dir=task_dir,
            working_dir=wd, shared_dir=self._shared_dir, node_root=ctx.scratch,
            node_id=NODE_ID, extra=ctx.env,
        )
        argv = render_argv(ctx.command or [], {
            "input": str(input_path), "output": str(output_path),
            "config": str(self._config_path or ""),
        })

        def finished(result: str, code: int | None, reason: str | None, final: bool,
                     size: int | None = None) -> AttemptEvent:
            return AttemptEvent(task.task_id, attempt, "finished", time.time(), worker,
                                result=result, exit_code=code, reason=reason, final=final,
                                output_size=size, stderr_tail=stderr_tail)

        stderr_tail: str | None = None  # read by finished(): set from the log before it is stored
        err = slot.logs["stderr"]
        # [app] stdout = "output": the app's stdout streams into its output file (no stdout log).
        with output_path.open("wb") if ctx.stdout_output else contextlib.nullcontext() as into:
            out = into or slot.logs["stdout"]
            launched = time.time()  # before launch: on a busy machine the app runs before it returns
            try:
                handle = self.runtime.launch(argv, env=env, cwd=wd, stdout=out, stderr=err)
            except OSError as e:
                program = argv[0] if argv else self.runtime.name  # no argv: the image's ENTRYPOINT
                err.write(f"shardrun: cannot start {program!r}: {e.strerror}\n".encode())
                stderr_tail = self._keep_logs(ctx, task, attempt, slot, transfer)
                return finished("failed", None, f"cannot start {program!r}: {e.strerror}", True)
            deadline = time.monotonic() + ctx.timeout if ctx.timeout else None
            running = _Running(handle, deadline)
            with self._lock:
                self._running[token] = running
            self._out.put(AttemptEvent(task.task_id, attempt, "started", launched, worker,
                                       pid=handle.pid))
            try:
                code = handle.wait()
            finally:
                with self._lock:
                    del self._running[token]
        stderr_tail = self._keep_logs(ctx, task, attempt, slot, transfer, tail_of_stderr=code != 0)

        if self._stopping.is_set() and code != 0:
            return finished("interrupted", code, "stopped by the user", True)
        if running.timed_out:
            reason = f"timed out after {ctx.timeout:g}s"
            return finished("timeout", code, reason, final_try)
        if code != 0:
            hopeless = self._hopeless(code)
            reason = _exit_reason(code) + (f" ({hopeless}; not retried)" if hopeless else "")
            return finished("failed", code, reason, final_try or hopeless is not None)
        if not output_path.is_file():
            what = "a folder" if output_path.is_dir() else "nothing"
            reason = f"exited 0 but wrote {what} at OUTPUT_PATH ({output_path.name})"
            return finished("failed", code, reason, final_try)
        if transfer:
            size = transfer.put_output(output_path)
        else:
            size = ctx.store.put_file(task.output_key, output_path, move=True)
        return finished("succeeded", code, None, True, size)

    def _hopeless(self, code: int) -> str | None:
        """Why a retry cannot help this exit code, or None. Shells (and so `sh -c` commands) exit
        126 for a program they cannot run and 127 for one they cannot find; podman and docker
        use 125-127 for the container itself. Batch fails such a task at once too."""
        if code == 127:
            return "a program was not found"
        if code == 126:
            return "a program could not be run (not executable?)"
        if code == 125 and self.runtime.isolated:
            return "the container could not be started"
        return None

    def _local_path(self, key: str) -> Path | None:
        """The store's own file for `key`, if the attempt can see it (a container sees the node root
        only, so it gets a copy)."""
        assert self._ctx is not None
        if self.runtime.isolated:
            return None
        return self._ctx.store.local_path(key)

    def _input(self, ctx: RunContext, task: TaskSpec, wd: Path) -> Path:
        if not task.input_key.endswith("/"):
            local = self._local_path(task.input_key)
            if local is not None:
                return local  # read-only by contract; no copy needed
            dest = wd / task.input_key.rsplit("/", 1)[-1]
            ctx.store.get_file(task.input_key, dest)
            return dest
        folder = wd / task.input_key.rstrip("/").rsplit("/", 1)[-1]
        for obj in ctx.store.list(task.input_key):
            dest = folder / obj.key[len(task.input_key):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            local = self._local_path(obj.key)
            if local is not None:
                dest.symlink_to(local)
            else:
                ctx.store.get_file(obj.key, dest)
        folder.mkdir(exist_ok=True)
        return folder

    def _transfer(self, ctx: RunContext, task: TaskSpec, attempt: int) -> TaskAccess | None:
        """Per-attempt access of its own when the store grants it (blob), so the task holds no key."""
        if self._access is None:
            return None
        logs = {s: log_key(ctx.run_id, task.task_id, attempt, s) for s in ("stdout", "stderr")}
        return self._access.task_access(input_key=task.input_key, output_key=task.output_key,
                                        log_keys=logs, timeout=ctx.timeout)

    def _keep_logs(self, ctx: RunContext, task: TaskSpec, attempt: int, slot: Slot,
                   transfer: TaskAccess | None = None, tail_of_stderr: bool = True) -> str | None:
        """Store the attempt's logs; return the end of its stderr when asked (for the ledger).

        An empty log is not stored, and its file stays open in the slot for the next attempt."""
        stderr_tail = None
        for stream, f in list(slot.logs.items()):
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                f.seek(0)  # shared with the app's process: it may have moved the offset
                continue
            f.close()
            del slot.logs[stream]
            path = slot.dir / f"{stream}.txt"
            if stream == "stderr" and tail_of_stderr:
                with path.open("rb") as log:
                    log.seek(max(0, size - TAIL_BYTES))
                    stderr_tail = tail(log.read(), TAIL_LINES)
            if transfer:
                transfer.put_log(stream, path)
                path.unlink()
            else:
                ctx.store.put_file(log_key(ctx.run_id, task.task_id, attempt, stream), path,
                                   move=True)
        return stderr_tail

    def _discard_slots(self) -> None:
        """Remove the folders kept for reuse (each an empty wd and empty logs)."""
        for slot in self._slots.values():
            slot.close()
            remove_task_dir(slot.dir)
        self._slots.clear()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def kill_strays(run_id: str) -> int:
    """Kill process groups left running by a client of this run that died (kill -9).

    They are found by the SHARDRUN_RUN_ID in their environment, so nothing else is touched.
    """
    marker = f"SHARDRUN_RUN_ID={run_id}".encode()
    killed = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            pgid = os.getpgid(int(proc.name))
            if pgid == os.getpgrp():
                continue  # never our own group
            os.killpg(pgid, signal.SIGKILL)
            killed += 1
        except (OSError, ValueError):
            continue
    return killed
