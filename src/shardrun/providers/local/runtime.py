"""Runtimes: how the local backend starts one attempt. `process` is the default.

A runtime launches an argv list (never a shell string) and hands back a handle the backend can wait
on and stop. Stopping always reaches the whole process group, not only the direct child.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol


@dataclass(frozen=True)
class ContainerSettings:
    """What a container runtime needs from the job: the image and the allowed `run` options."""

    image: str
    options: tuple[str, ...] = ()


class Launched(Protocol):
    pid: int

    def wait(self) -> int:
        """Block until the attempt ends; return its exit code (negative: killed by that signal)."""
        ...

    def terminate(self) -> None:
        """Ask the attempt to stop (SIGTERM to the whole group)."""
        ...

    def kill(self) -> None:
        """Stop it now (SIGKILL to the whole group)."""
        ...


class Runtime(Protocol):
    name: str
    isolated: bool  # the attempt sees the node root only, so inputs must be copied under it

    def prepare(self, run_id: str, containers: ContainerSettings | None) -> None:
        """Once per run, before any attempt (a container runtime checks its image here)."""
        ...

    def launch(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout: IO[bytes],
        stderr: IO[bytes],
    ) -> Launched: ...


class ProcessGroup:
    """A child started in its own session, so one signal reaches everything it started."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def wait(self) -> int:
        # Wait without reaping, so the group id cannot be reused while we clean up stragglers
        # (background children the app left behind); then reap.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        self._signal(signal.SIGKILL)
        return self.popen.wait()

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.popen.returncode is not None:
            return  # reaped: the group id may belong to someone else now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


_DEVNULL: list[int] = []


def _devnull() -> int:
    """/dev/null, opened once for every attempt's stdin instead of once per attempt."""
    if not _DEVNULL:
        _DEVNULL.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _DEVNULL[0]


class ProcessRuntime:
    name = "process"
    isolated = False

    def prepare(self, run_id: str, containers: ContainerSettings | None) -> None:
        _devnull()  # before the workers start, so they never race to open it

    def __init__(self) -> None:
        self._found: dict[tuple[str, str | None], str | None] = {}

    def launch(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout: IO[bytes],
        stderr: IO[bytes],
    ) -> Launched:
        popen = subprocess.Popen(
            argv,
            executable=self._program(argv[0], env) if argv else None,
            cwd=cwd,
            env=env,
            stdin=_devnull(),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
        )
        return ProcessGroup(popen)

    def _program(self, name: str, env: dict[str, str]) -> str | None:
        """A bare program name looked up on the task's PATH once per run, not once per task: each
        PATH entry before the right one costs every launch a failed exec. argv[0] stays as given."""
        key = (name, env.get("PATH"))
        if key not in self._found:
            dirs = os.get_exec_path(env)
            if "/" in name or not all(os.path.isabs(d) for d in dirs):
                self._found[key] = None  # relative to the task's working folder: the child's job
            else:
                self._found[key] = shutil.which(name, path=os.pathsep.join(dirs))
        return self._found[key]
