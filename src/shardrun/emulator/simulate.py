"""Simulated tasks, so that one emulator can hold a job of 100,000 tasks.

With `EmulatorConfig.simulate_seconds` (`--simulate-tasks SECONDS` or `LO-HI`), a task placed on a
node starts no process and moves no resource file: it completes after a simulated duration (fixed,
or drawn from the range with a seeded generator, so the same seed, job and task ID always give the
same duration), with exit code 0. Its output files whose upload condition holds are then written
straight into blob storage, by SAS URL or managed identity as for a real task, with the same
`FileUpload*` codes when that fails. What a simulated task "wrote":

- `stdout.txt` (one line: the task, its node and its duration) and an empty `stderr.txt`, in the task
  directory, so `../stdout.txt` or `../std*.txt` upload them;
- for any other pattern, one file named by the pattern (a wildcard filled with the task ID, `**/`
  dropped), holding one line: `<job>/<task>:` and the paths of its resource files (their URLs
  without the query). One output per task, so a client's merge finds them all.

A simulated task leaves no files on its node (`Tasks_ListTaskFiles` answers 409
`TaskFilesUnavailable`). All simulated attempts share one timer thread and a few upload workers,
which reuse one blob client per container: no thread per task.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import logging
import posixpath
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.storage.blob import ContainerClient

from .execution import AttemptSpec, Outcome, RunningAttempt, task_environment
from .files import Match, TransferError, container_client, upload_outputs
from .identity import NodeIdentities

log = logging.getLogger("shardrun.emulator")
KILLED_EXIT_CODE = 143  # what a process ended by SIGTERM reports (128 + 15)
MAX_CLIENTS = 256


class Simulator:
    """The timer and upload workers of every simulated attempt."""

    def __init__(self, seconds: tuple[float, float], seed: int, workers: int) -> None:
        self.seconds = seconds
        self.seed = seed
        self._heap: list[tuple[float, int, SimulatedAttempt]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._closing = False
        self._uploads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulated-upload")
        self._clients: dict[tuple[str, str], ContainerClient] = {}
        self._clients_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="batch-emulator-simulator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the attempts already stopped (a shutdown stops them all), then end."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._uploads.shutdown(wait=True, cancel_futures=False)

    def duration(self, spec: AttemptSpec) -> float:
        low, high = self.seconds
        if low == high:
            return low
        return random.Random(f"{self.seed}:{spec.job_id}:{spec.task_id}").uniform(low, high)

    def schedule(self, attempt: SimulatedAttempt, at: float) -> None:
        with self._wake:
            heapq.heappush(self._heap, (at, next(self._order), attempt))
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not self._due():
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closing:
                    due = [a for _, _, a in self._heap if a.stop_reason is not None]
                    self._heap.clear()
                else:
                    now = time.monotonic()
                    due = []
                    while self._heap and self._heap[0][0] <= now:
                        due.append(heapq.heappop(self._heap)[2])
            for attempt in due:
                if attempt.finished:
                    continue  # stopped early and already finished, or the other way round
                attempt.finished = True
                if self._closing or not _uploads_anything(attempt):
                    self._finish(attempt)
                else:
                    self._uploads.submit(self._finish, attempt)
            if self._closing:
                return

    def _due(self) -> bool:
        return bool(self._heap) and self._heap[0][0] <= time.monotonic()

    def _finish(self, attempt: SimulatedAttempt) -> None:
        reason = attempt.stop_reason
        outcome = Outcome(exit_code=0 if reason is None else KILLED_EXIT_CODE)
        if _uploads_anything(attempt) and not self._closing:
            try:
                self._upload(attempt, succeeded=reason is None)
            except TransferError as exc:
                outcome.failure = exc.failure_info()
            except Exception as exc:  # a bug here must not leave the task running forever
                log.exception("simulated upload of %s failed", attempt.spec.task_id)
                outcome.failure = {
                    "category": "servererror",
                    "code": "Unknown",
                    "message": f"emulator error: {type(exc).__name__}",
                }
        attempt.on_done(attempt, outcome)

    def _upload(self, attempt: SimulatedAttempt, *, succeeded: bool) -> None:
        spec = attempt.spec
        task_dir = spec.dirs.task_dir(spec.job_id, spec.task_id)
        env = task_environment(spec, task_dir, task_dir / "wd")
        stdout = f"simulated task {spec.task_id} on {spec.node_id}: {attempt.seconds:.3f}s\n".encode()
        output = _output_line(spec)
        upload_outputs(
            spec.output_files,
            succeeded,
            env,
            lambda pattern: simulated_files(pattern, spec.task_id, stdout, output),
            lambda dest: self._container(dest, spec.identities),
            [],
        )

    def _container(self, dest: dict[str, Any], identities: NodeIdentities) -> ContainerClient:
        """One client per container URL and identity, so uploads reuse their connections."""
        reference = dest.get("identityReference")
        if reference is not None:
            # Checked on every upload: the node must have the identity (IdentityDenied otherwise).
            identities.storage_credential(reference, dest["containerUrl"])
        key = (dest["containerUrl"], str((reference or {}).get("resourceId", "")).lower())
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                if len(self._clients) >= MAX_CLIENTS:
                    self._clients.clear()
                client = self._clients[key] = container_client(dest, identities)
            return client


class SimulatedAttempt:
    """A task's attempt that only waits: `RunningAttempt` for the scheduler, driven by a Simulator."""

    def __init__(
        self,
        spec: AttemptSpec,
        on_done: Callable[[RunningAttempt, Outcome], None],
        simulator: Simulator,
    ) -> None:
        self.spec = spec
        self.on_done = on_done
        self.stop_reason: str | None = None
        self.finished = False  # set by the simulator's thread only
        self.seconds = 0.0
        self._simulator = simulator

    def start(self) -> None:
        self.seconds = self._simulator.duration(self.spec)
        self._simulator.schedule(self, time.monotonic() + self.seconds)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self._simulator.schedule(self, 0.0)

    def join(self, timeout: float) -> None:
        """Nothing to wait for: the Simulator finishes stopped attempts when it stops."""


def _uploads_anything(attempt: SimulatedAttempt) -> bool:
    return bool(attempt.spec.output_files) and attempt.stop_reason in (None, "terminate", "wallclock")


def simulated_files(pattern: str, task_id: str, stdout: bytes, output: bytes) -> list[Match]:
    """What a simulated task's pattern matches (see the module's docstring), as upload_outputs wants."""
    base = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    base_dir = base if base.endswith("/") or not base else posixpath.dirname(base)
    logs = {"../stdout.txt": stdout, "../stderr.txt": b""}
    found = [(path, data) for path, data in logs.items() if fnmatch.fnmatchcase(path, pattern)]
    if not found and not pattern.startswith("../"):
        name = pattern.replace("**/", "").replace("*", task_id).replace("?", "0")
        found = [(re.sub(r"\[!?(.)[^\]]*\]", r"\1", name), output)]
    return [
        (posixpath.relpath(path, base_dir) if base_dir else path, posixpath.basename(path), data)
        for path, data in found
    ]


def _output_line(spec: AttemptSpec) -> bytes:
    inputs = []
    for resource in spec.resource_files:
        url = resource.get("httpUrl") or resource.get("storageContainerUrl") or ""
        path = urllib.parse.urlsplit(url).path
        inputs.append(path + ("/" + resource["blobPrefix"] if "blobPrefix" in resource else ""))
    return f"{spec.job_id}/{spec.task_id}: {' '.join(inputs)}\n".encode()
