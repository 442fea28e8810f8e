"""Checks made before a run exists, so a mistake costs nothing and leaves nothing behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .compute import backend_names
from .compute.container import job_runtime
from .compute.contract import base_environment
from .errors import JobFileError
from .spec import JobSpec
from .storage import store_names


def resolved_command(spec: JobSpec) -> list[str] | None:
    """The app's argv with arguments that name a file beside the job file made absolute.

    Tasks run in their own working folders, so `python3 count.py` must point at the job's count.py.
    """
    if spec.app.command is None:
        return None
    if job_runtime(spec) != "process":
        return list(spec.app.command)  # runs inside the image: host paths mean nothing there
    out = []
    for arg in spec.app.command:
        if arg and "{" not in arg and not arg.startswith("-") and not os.path.isabs(arg):
            candidate = spec.path(arg)
            if candidate.is_file():
                out.append(str(candidate))
                continue
        out.append(arg)
    return out


def validate_job(path: Path | str) -> tuple[JobSpec, list[Path]]:
    """Load a job file and check it and everything it names; return the spec and its input files."""
    from .spec import load_spec
    from .split import resolve_inputs

    spec = load_spec(path)
    check_job(spec, fetch_image=False)  # a missing image is looked up, not pulled
    return spec, resolve_inputs(spec)


def check_job(spec: JobSpec, *, fetch_image: bool = True) -> None:
    """Raise JobFileError naming the file and key for anything that would fail later.

    For a container job this also checks the runtime and the image, pulling it when `fetch_image`.
    """
    src = spec.source
    runtime = job_runtime(spec)
    if spec.run.backend not in backend_names():
        raise JobFileError(
            f"{src}: [run] backend {spec.run.backend!r} is unknown; known: {', '.join(backend_names())}"
        )
    if spec.run.storage not in store_names():
        raise JobFileError(
            f"{src}: [run] storage {spec.run.storage!r} is unknown; known: {', '.join(store_names())}"
        )
    if spec.run.backend == "azure-batch":
        if spec.batch is None:
            raise JobFileError(f"{src}: [run] backend 'azure-batch' needs a [batch] section "
                               "(see docs/azure.md)")
        if spec.run.storage != "blob":
            raise JobFileError(f"{src}: [run] backend 'azure-batch' needs [run] storage = 'blob': "
                               "Batch nodes read and write the run's files in Blob Storage")
    command = resolved_command(spec)
    if command is None:
        if runtime == "process":
            raise JobFileError(
                f"{src}: [app] command is required with the process runtime "
                "(leave it out only when a container image has an ENTRYPOINT)"
            )
    else:
        if runtime == "process" and spec.run.backend == "local":
            _check_program(spec, command[0])  # elsewhere the program is on the node, not here
        if spec.app.config is None and any("{config}" in a for a in command):
            raise JobFileError(f"{src}: [app] command uses {{config}} but [app] config is not set")
    if spec.app.config is not None:
        _check_file(spec, spec.app.config, "[app] config")
    names: set[str] = set()
    for i, f in enumerate(spec.app.files):
        _check_file(spec, f, f"[app] files[{i}]")
        if f.name in names:
            raise JobFileError(f"{src}: [app] files has two files named {f.name!r}")
        names.add(f.name)
    merge_dir = spec.path(spec.merge.output).parent
    if merge_dir.exists() and not merge_dir.is_dir():
        raise JobFileError(f"{src}: [merge] output: {merge_dir} is not a folder")
    _check_containers(spec, runtime, fetch_image)


def _check_containers(spec: JobSpec, runtime: str, fetch_image: bool) -> None:
    """The Dockerfile [image] names; for container jobs, the runtime and the image (costly)."""
    from .image import check_image, dockerfile, find_engine

    src = spec.source
    if spec.image is not None:
        dockerfile(spec)
    if runtime == "process":
        if spec.run.container_options:
            raise JobFileError(f"{src}: [run] container_options need a container runtime and an image")
        return
    if spec.app.image is None and spec.image is None:
        raise JobFileError(f"{src}: [run] runtime {runtime!r} needs an image: set [app] image "
                           "or add an [image] section")
    if spec.run.backend != "local":
        return  # a remote backend's nodes pull the image themselves
    check_image(spec, find_engine(spec.run.runtime), fetch=fetch_image)  # 'auto' says what's missing


def _check_program(spec: JobSpec, program: str) -> None:
    where = f"{spec.source}: [app] command[0]"
    if os.sep in program:
        path = Path(program)
        if not path.is_file():
            raise JobFileError(f"{where}: {program!r} does not exist")
        if not os.access(path, os.X_OK):
            raise JobFileError(f"{where}: {program!r} is not executable (chmod +x?)")
        return
    if shutil.which(program, path=base_environment().get("PATH")) is None:
        raise JobFileError(f"{where}: program {program!r} not found on PATH or beside the job file")


def _check_file(spec: JobSpec, path: Path, key: str) -> None:
    full = spec.path(path)
    if not full.is_file():
        raise JobFileError(f"{spec.source}: {key}: {str(path)!r} does not exist")
