"""The container runtimes (podman, docker): each task attempt runs in a container of the job's image.

The contract is the one a Batch node gives a container task: the node root directory is mapped in at
the same path, the working directory is AZ_BATCH_TASK_WORKING_DIR, the task's variables are set,
and with no [app] command the image's ENTRYPOINT runs (the wrapper-script pattern). A command
replaces the ENTRYPOINT. Everything is an argv list; user options pass an allow-list first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import IO, TYPE_CHECKING

from shardrun.core.containers import (
    CONTAINER_RUNTIMES,
    RUNTIMES,
    job_image,
    job_runtime,
    parse_container_options,
)
from shardrun.core.errors import UsageError
from shardrun.providers.local.runtime import ContainerSettings, Launched, ProcessRuntime, Runtime

if TYPE_CHECKING:
    from shardrun.core.spec import JobSpec
    from shardrun.images.engine import Engine

# shardrun.images.engine is imported where a container runtime first needs it: a process run
# (the default) does not pay for it at start-up.

LABEL = "shardrun.run"

# -- what a job asks for ----------------------------------------------------------------------------

def container_settings(spec: JobSpec) -> ContainerSettings | None:
    """The job's container settings; None for the process runtime."""
    image = job_image(spec)
    if image is None or job_runtime(spec) == "process":
        return None
    return ContainerSettings(image, tuple(parse_container_options(list(spec.run.container_options))))


# -- the runtime ------------------------------------------------------------------------------------

class ContainerRuntime:
    """Runs each attempt as `podman run` / `docker run` of the job's image."""

    isolated = True  # the attempt sees the node root only, so inputs must be copied under it

    def __init__(self, name: str) -> None:
        from shardrun.images.engine import Engine

        self.name = name
        self.engine = Engine(name)
        self.image: str | None = None
        self.options: list[str] = []

    def prepare(self, run_id: str, containers: ContainerSettings | None) -> None:
        """Called once per run before any attempt: settle the image, remove leftover containers."""
        if containers is None:
            raise UsageError(f"the {self.name} runtime needs an image: set [app] image or [image]")
        self.image = containers.image
        self.options = list(containers.options)
        from shardrun.images.engine import ImageError

        if not self.engine.exists(self.image):
            raise ImageError(f"image {self.image} is not present locally (build or pull it; "
                             "`shardrun run` pulls it during its preflight)")
        self.remove_run_containers(run_id)

    def remove_run_containers(self, run_id: str) -> int:
        """Remove the containers of this run that a dead client left running. By label, exactly."""
        found = self.engine.call("ps", "-a", "-q", "--filter", f"label={LABEL}={run_id}")
        ids = found.stdout.split() if found.returncode == 0 else []
        if ids:
            self.engine.call("rm", "-f", *ids)
        return len(ids)

    def launch(self, argv: list[str], *, env: dict[str, str], cwd: Path, stdout: IO[bytes],
               stderr: IO[bytes]) -> Launched:
        if self.image is None:
            raise UsageError("container runtime used before prepare()")
        root = env.get("AZ_BATCH_NODE_ROOT_DIR") or str(cwd)
        if "," in root:
            raise UsageError(f"the node root {root!r} has a comma, which a bind mount cannot take")
        name = "shardrun-{}-{}-{}-{}".format(env.get("SHARDRUN_RUN_ID", "run"),
                                             env.get("SHARDRUN_TASK_ID", "task"),
                                             env.get("SHARDRUN_ATTEMPT", "0"), secrets.token_hex(3))
        cmd = [self.engine.path, "run", "--rm", "--name", name, "--pull", "never",
               "--label", f"{LABEL}={env.get('SHARDRUN_RUN_ID', '')}",
               "--mount", f"type=bind,source={root},destination={root}", "--workdir", str(cwd)]
        # Values travel in the client's environment, never on its command line.
        for key in sorted(env):
            cmd += ["--env", key]
        if self.name == "podman":
            cmd.append("--http-proxy=false")  # else podman copies the client's *_proxy variables in
        if self.name == "docker" and os.getuid() != 0:
            cmd += ["--user", f"{os.getuid()}:{os.getgid()}"]  # outputs owned by the user
        cmd += self.options
        if argv:
            # A command replaces the ENTRYPOINT; podman reads a JSON list, docker a plain program.
            entry = json.dumps([argv[0]]) if self.name == "podman" else argv[0]
            cmd += ["--entrypoint", entry]
        cmd += [self.image, *argv[1:]]
        popen = subprocess.Popen(cmd, env=os.environ | env, stdin=subprocess.DEVNULL, stdout=stdout,
                                 stderr=stderr, start_new_session=True, close_fds=True)
        return ContainerAttempt(self.engine, name, popen)


class ContainerAttempt:
    """A running `podman run`. Stopping signals the container by its exact name, not only the client."""

    def __init__(self, engine: Engine, name: str, popen: subprocess.Popen[bytes]) -> None:
        self.engine = engine
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self._signalled = False
        self._last: signal.Signals | None = None  # the signal the last helper sends
        self._helpers: list[subprocess.Popen[bytes]] = []

    def wait(self) -> int:
        from shardrun.images.engine import QUICK, ImageError

        code = self.popen.wait()
        if self._signalled or code < 0:
            # The client is gone; make sure its container is too (it may have been mid-start).
            extra = ["--time", "0"] if self.engine.name == "podman" else []
            with contextlib.suppress(ImageError):
                self.engine.call("rm", "-f", *extra, self.name)
        for helper in self._helpers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.wait(timeout=QUICK)
        if self._signalled and code > 128:
            return -(code - 128)  # 137 -> -9: killed by SIGKILL, as with the process runtime
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is not None:
            return
        if self._helpers and self._helpers[-1].poll() is None and (
                sig != signal.SIGKILL or self._last is signal.SIGKILL):
            return  # one signal in flight at a time; a SIGKILL never waits behind a SIGTERM
        self._signalled, self._last = True, sig
        # Not waited for here: the backend calls this from its polling loop.
        self._helpers.append(subprocess.Popen(
            self.engine.argv("kill", "--signal", sig.name.removeprefix("SIG"), self.name),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))


def open_runtime(name: str) -> Runtime:
    """A runtime by name. 'auto' means process here: the runner resolves it against the job first."""
    if name in ("process", "auto"):
        return ProcessRuntime()
    if name in CONTAINER_RUNTIMES:
        return ContainerRuntime(name)
    raise UsageError(f"unknown runtime {name!r}; this version knows: {', '.join(RUNTIMES)}")
