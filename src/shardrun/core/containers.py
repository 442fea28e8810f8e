"""What a job file may say about containers: image references, the run-option allow-list, and
which runtime and image a job's tasks use. Pure functions: no container engine is called here."""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shardrun.core.spec import JobSpec

# The distribution reference grammar (docker/distribution reference.go), written out once.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?"
REPOSITORY_RE = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REFERENCE_RE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$"
)
REGISTRY_RE = re.compile(rf"^{_HOST}(?:/{_COMPONENT})*$")


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


CONTAINER_RUNTIMES = ("podman", "docker")
RUNTIMES = ("auto", "process", *CONTAINER_RUNTIMES)


def resolve_runtime(name: str, image: str | None) -> str:
    """'auto': the process runtime unless the job names an image, then podman if installed, else docker."""
    if name != "auto":
        return name
    if image is None:
        return "process"
    for cli in CONTAINER_RUNTIMES:
        if shutil.which(cli):
            return cli
    return CONTAINER_RUNTIMES[0]  # none installed: preflight says so, with the install hint



def job_image(spec: JobSpec) -> str | None:
    """The image a job's tasks run: [app] image, else the one `shardrun image build` makes."""
    if spec.app.image:
        return spec.app.image
    if spec.image is not None:
        return f"{spec.image.name}:{spec.image.version}"
    return None


def job_runtime(spec: JobSpec) -> str:
    """The runtime a job's tasks use: [run] runtime, with 'auto' resolved."""
    return resolve_runtime(spec.run.runtime, job_image(spec))
