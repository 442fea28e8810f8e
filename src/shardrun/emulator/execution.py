"""One attempt of one task on one simulated node: directories, environment, resource files, the
command (as a process, or in a podman container), stdout/stderr, and output files.

The directory layout is a Linux node's: the node root holds `shared/`, `startup/`, `fsmounts/` and
`workitems/<job>/job-1/<task>/` (the task directory, with stdout.txt, stderr.txt and `wd/`).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.contract import base_environment
from ..providers.local.runtime import Launched, ProcessRuntime
from .files import TransferError, download_resource_files, upload_output_files
from .identity import NodeIdentities

STOP_GRACE_SECONDS = 3.0


@dataclass
class NodeDirs:
    root: Path

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def startup(self) -> Path:
        return self.root / "startup"

    @property
    def mounts(self) -> Path:
        return self.root / "fsmounts"

    def task_dir(self, job_id: str, task_id: str) -> Path:
        return self.root / "workitems" / job_id / "job-1" / task_id

    def create(self) -> None:
        for path in (self.shared, self.startup / "wd", self.mounts, self.root / "workitems"):
            path.mkdir(parents=True, exist_ok=True)


@dataclass
class Outcome:
    exit_code: int | None = None
    failure: dict[str, Any] | None = None  # failureInfo for pre-processing or upload failures
    container_id: str | None = None


@dataclass
class AttemptSpec:
    """Everything an attempt needs, copied out of the state so it runs without the lock."""

    account_name: str
    account_url: str
    pool_id: str
    job_id: str
    task_id: str
    node_id: str
    dedicated: bool
    dirs: NodeDirs
    command_line: str
    environment: dict[str, str]
    resource_files: list[dict[str, Any]]
    output_files: list[dict[str, Any]]
    container: dict[str, Any] | None  # the task's containerSettings
    container_runtime: str
    podman_args: tuple[str, ...]
    final_if_failed: bool  # no retries left: a non-zero exit ends the task, so outputs are uploaded
    deadline: float | None  # monotonic time at which the wall clock limit is reached
    identities: NodeIdentities = field(default_factory=NodeIdentities)  # the pool's, for storage
    extra: dict[str, Any] = field(default_factory=dict)


class RunningAttempt(Protocol):
    """An attempt in progress: a process (`Attempt`) or a simulated one (simulate.py)."""

    spec: AttemptSpec
    stop_reason: str | None

    def start(self) -> None: ...

    def stop(self, reason: str) -> None: ...

    def join(self, timeout: float) -> None: ...


class Attempt:
    """Runs in its own thread; `stop(reason)` ends it early (requeue, terminate, wallclock, ...)."""

    def __init__(self, spec: AttemptSpec, on_done: Callable[[RunningAttempt, Outcome], None]) -> None:
        self.spec = spec
        self.on_done = on_done
        self.stop_reason: str | None = None
        self._launched: Launched | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._run, name=f"task-{spec.job_id}-{spec.task_id}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            launched = self._launched
        if launched is not None:
            launched.terminate()
            timer = threading.Timer(STOP_GRACE_SECONDS, launched.kill)
            timer.daemon = True
            timer.start()

    def _run(self) -> None:
        try:
            outcome = self._execute()
        except Exception as exc:  # a bug here must not leave the task running forever
            outcome = Outcome(
                failure={
                    "category": "servererror",
                    "code": "Unknown",
                    "message": f"emulator error: {type(exc).__name__}",
                }
            )
        self.on_done(self, outcome)

    def _execute(self) -> Outcome:
        spec = self.spec
        spec.dirs.create()
        task_dir = spec.dirs.task_dir(spec.job_id, spec.task_id)
        shutil.rmtree(task_dir, ignore_errors=True)
        wd = task_dir / "wd"
        wd.mkdir(parents=True)
        try:
            download_resource_files(spec.resource_files, wd, spec.identities)
        except TransferError as exc:
            return Outcome(failure=exc.failure_info())
        env = task_environment(spec, task_dir, wd)
        argv = self._argv(wd, env)
        if not argv:
            return Outcome(failure=_failure("CommandProgramNotFound", "The command line is empty."))
        with (task_dir / "stdout.txt").open("wb") as out, (task_dir / "stderr.txt").open("wb") as err:
            with self._lock:
                if self.stop_reason is not None:
                    return Outcome()
                try:
                    self._launched = ProcessRuntime().launch(argv, env=env, cwd=wd, stdout=out, stderr=err)
                except FileNotFoundError:
                    return Outcome(
                        failure=_failure(
                            "CommandProgramNotFound", "The specified command program is not found."
                        )
                    )
                except OSError as exc:
                    return Outcome(
                        failure=_failure(
                            "CommandLaunchFailed", f"Failed to launch the command line: {exc.strerror}"
                        )
                    )
            code = self._launched.wait()
        name = spec.extra.get("container_name")
        if name and self.stop_reason is not None:
            # A podman client killed after the grace period can leave its container behind.
            subprocess.run(
                ["podman", *spec.podman_args, "rm", "-f", "--ignore", name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
        exit_code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
        outcome = Outcome(exit_code=exit_code, container_id=spec.extra.get("container_name"))
        if self.stop_reason in (None, "terminate", "wallclock"):
            final = exit_code == 0 or spec.final_if_failed or self.stop_reason is not None
            if final:
                try:
                    succeeded = exit_code == 0 and self.stop_reason is None
                    upload_output_files(spec.output_files, task_dir, wd, succeeded, env, spec.identities)
                except TransferError as exc:
                    outcome.failure = exc.failure_info()
        return outcome

    def _argv(self, wd: Path, env: dict[str, str]) -> list[str]:
        spec = self.spec
        command = shlex.split(spec.command_line)
        if spec.container is None or spec.container_runtime != "podman":
            return command
        # Batch maps the node root into the container at the same path, with the task's variables.
        name = f"batch-{spec.node_id[-12:]}-{spec.task_id}-{int(time.time() * 1000)}"[:120]
        spec.extra["container_name"] = name
        argv = [
            "podman",
            *spec.podman_args,
            "run",
            "--rm",
            "--name",
            name,
            "-v",
            f"{spec.dirs.root}:{spec.dirs.root}",
        ]
        for var in sorted(env):
            if var.startswith("AZ_BATCH_") or var in spec.environment:
                argv += ["-e", var]  # the value comes from podman's own environment, not the argv
        if spec.container.get("workingDirectory", "taskWorkingDirectory") == "taskWorkingDirectory":
            argv += ["-w", str(wd)]
        argv += shlex.split(spec.container.get("containerRunOptions", ""))
        return [*argv, spec.container["imageName"], *command]


def task_environment(spec: AttemptSpec, task_dir: Path, wd: Path) -> dict[str, str]:
    """The task's environment: basics, the job's and task's settings, then the AZ_BATCH_* variables."""
    env = base_environment()
    env.update(spec.environment)
    env.update(
        {
            "AZ_BATCH_ACCOUNT_NAME": spec.account_name,
            "AZ_BATCH_ACCOUNT_URL": spec.account_url,
            "AZ_BATCH_POOL_ID": spec.pool_id,
            "AZ_BATCH_JOB_ID": spec.job_id,
            "AZ_BATCH_TASK_ID": spec.task_id,
            "AZ_BATCH_NODE_ID": spec.node_id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if spec.dedicated else "false",
            "AZ_BATCH_NODE_ROOT_DIR": str(spec.dirs.root),
            "AZ_BATCH_NODE_SHARED_DIR": str(spec.dirs.shared),
            "AZ_BATCH_NODE_STARTUP_DIR": str(spec.dirs.startup),
            "AZ_BATCH_NODE_STARTUP_WORKING_DIR": str(spec.dirs.startup / "wd"),
            "AZ_BATCH_NODE_MOUNTS_DIR": str(spec.dirs.mounts),
            "AZ_BATCH_TASK_DIR": str(task_dir),
            "AZ_BATCH_TASK_WORKING_DIR": str(wd),
            "AZ_BATCH_TASK_USER": "_azbatch",
            "AZ_BATCH_TASK_USER_IDENTITY": "PoolNonAdmin",
        }
    )
    return env


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"category": "usererror", "code": code, "message": message}
