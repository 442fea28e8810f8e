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
import re
import secrets
import shlex
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import UsageError
from ..image import QUICK, Engine, ImageError, job_image
from .runtime import Launched, resolve_runtime

if TYPE_CHECKING:
    from ..spec import JobSpec
    from . import RunContext

LABEL = "shardrun.run"

# -- user options: parsed into a list, then checked flag by flag -------------------------------------

_SIZE = re.compile(r"^\d+(?:\.\d+)?[bkmgBKMG]?$")


def _size(v: str) -> bool:
    return bool(_SIZE.match(v))


def _count(v: str) -> bool:
    return bool(re.fullmatch(r"-1|\d+", v))


def _cpus(v: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:\.\d+)?", v)) and float(v) > 0


# Each allowed flag and a check of its value (None: a switch without a value). Nothing here can
# mount host paths, add privileges, share host namespaces or replace what shardrun sets.
ALLOWED_OPTIONS: dict[str, Callable[[str], bool] | None] = {
    "--memory": _size,
    "--memory-reservation": _size,
    "--memory-swap": lambda v: v == "-1" or _size(v),
    "--shm-size": _size,
    "--cpus": _cpus,
    "--cpu-shares": _count,
    "--cpuset-cpus": lambda v: bool(re.fullmatch(r"\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*", v)),
    "--pids-limit": _count,
    "--ulimit": lambda v: bool(re.fullmatch(r"[a-z]+=-?\d+(?::-?\d+)?", v)),
    "--network": lambda v: v in ("none", "bridge"),
    "--read-only": None,
    "--init": None,
    "--tmpfs": lambda v: bool(re.fullmatch(r"/[A-Za-z0-9_./-]*(?::[A-Za-z0-9=,_-]+)?", v)),
    "--cap-drop": lambda v: bool(re.fullmatch(r"[A-Za-z_]+", v)),
    "--security-opt": lambda v: v in ("no-new-privileges", "no-new-privileges:true",
                                      "no-new-privileges=true"),
    "--hostname": lambda v: bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", v)),
}
ALIASES = {"-m": "--memory", "--net": "--network"}


def parse_container_options(value: str | list[str]) -> list[str]:
    """'--memory 2g --network=none' or a list -> a checked argv list. ValueError names the flag."""
    items = shlex.split(value) if isinstance(value, str) else list(value)
    out: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        flag, eq, val = item.partition("=")
        flag = ALIASES.get(flag, flag)
        if flag not in ALLOWED_OPTIONS:
            shown = flag if flag.startswith("-") else "a value without a flag"
            raise ValueError(f"{shown!r} is not an allowed container option "
                             f"(allowed: {', '.join(sorted(ALLOWED_OPTIONS))})")
        check = ALLOWED_OPTIONS[flag]
        if check is None:
            if eq:
                raise ValueError(f"{flag} takes no value")
            out.append(flag)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(items):
                raise ValueError(f"{flag} needs a value")
            val = items[i + 1]
            i += 1
        if not check(val):
            raise ValueError(f"{flag} has a value that is not allowed: {val!r}")
        out += [flag, val]
        i += 1
    return out


# -- what a job asks for ----------------------------------------------------------------------------

def job_runtime(spec: JobSpec) -> str:
    """The runtime a job's tasks use: [run] runtime, with 'auto' resolved."""
    return resolve_runtime(spec.run.runtime, job_image(spec))


def run_options(spec: JobSpec) -> dict[str, Any]:
    """What a backend needs to run the job's tasks in containers (empty for the process runtime)."""
    image = job_image(spec)
    if image is None or job_runtime(spec) == "process":
        return {}
    return {"image": image, "container_options": list(spec.run.container_options)}


# -- the runtime ------------------------------------------------------------------------------------

class ContainerRuntime:
    """Runs each attempt as `podman run` / `docker run` of the job's image."""

    isolated = True  # the attempt sees the node root only, so inputs must be copied under it

    def __init__(self, name: str) -> None:
        self.name = name
        self.engine = Engine(name)
        self.image: str | None = None
        self.options: list[str] = []

    def prepare(self, ctx: RunContext) -> None:
        """Called once per run before any attempt: settle the image, remove leftover containers."""
        image = ctx.options.get("image")
        if not image:
            raise UsageError(f"the {self.name} runtime needs an image: set [app] image or [image]")
        self.image = str(image)
        self.options = parse_container_options(list(ctx.options.get("container_options", [])))
        if not self.engine.exists(self.image):
            raise ImageError(f"image {self.image} is not present locally (build or pull it; "
                             "`shardrun run` pulls it during its preflight)")
        self.remove_run_containers(ctx.run_id)

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
        self._helpers: list[subprocess.Popen[bytes]] = []

    def wait(self) -> int:
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
        if self._helpers and self._helpers[-1].poll() is None:
            return  # one signal in flight at a time; the backend calls again on its next poll
        self._signalled = True
        # Not waited for here: the backend calls this from its polling loop.
        self._helpers.append(subprocess.Popen(
            self.engine.argv("kill", "--signal", sig.name.removeprefix("SIG"), self.name),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
