"""Checks made before a run exists, so a mistake costs nothing and leaves nothing behind."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from shardrun.core import provider
from shardrun.core.containers import job_runtime
from shardrun.core.errors import JobFileError
from shardrun.core.spec import JobSpec


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
            if os.path.isfile(candidate):  # never raises (a long `sh -c` script is no name)
                out.append(str(candidate))
                continue
        out.append(arg)
    return out


def job_warnings(spec: JobSpec) -> list[str]:
    """Likely mistakes that are not errors: one line each, naming the file and key."""
    warnings = []
    command = spec.app.command
    if command and spec.app.stdout is None and not any("{output}" in arg for arg in command):
        warnings.append(
            f"{spec.source}: warning: [app] command has no {{output}} and [app] stdout is not set: "
            "the app must write its output to $OUTPUT_PATH itself; a program that prints its "
            "result needs [app] stdout = \"output\"")
    return warnings


def validate_job(path: Path | str, *, home: Path | None = None) -> tuple[JobSpec, list[Path]]:
    """Load a job file and check it and everything it names; return the spec and its input files.

    `home`: shardrun's home (where the merged output may never go); default: the default home.
    """
    from shardrun.core.spec import load_spec

    spec = load_spec(path)
    inputs = _check_job(spec, fetch_image=False, home=home)  # a missing image is looked up, not pulled
    return spec, inputs


def check_job(spec: JobSpec, *, fetch_image: bool = True, home: Path | None = None) -> None:
    """Raise JobFileError naming the file and key for anything that would fail later.

    The generic checks are here; the providers of the job's compute and store add their own (for a
    local container job that includes the runtime and the image, pulled when `fetch_image`).
    `home`: shardrun's home (where the merged output may never go); default: the default home.
    """
    _check_job(spec, fetch_image=fetch_image, home=home)


def _check_job(spec: JobSpec, *, fetch_image: bool, home: Path | None) -> list[Path]:
    """check_job, returning the input files it resolved."""
    from shardrun.core.merge import check_output
    from shardrun.core.split import resolve_inputs

    src = spec.source
    try:
        compute_provider = provider.for_compute(spec.run.backend)
    except JobFileError:
        raise JobFileError(f"{src}: [run] backend {spec.run.backend!r} is unknown; known: "
                           f"{', '.join(provider.compute_names())}") from None
    try:
        store_provider = provider.for_store(spec.run.storage)
    except JobFileError:
        raise JobFileError(f"{src}: [run] storage {spec.run.storage!r} is unknown; known: "
                           f"{', '.join(provider.store_names())}") from None
    runtime = job_runtime(spec)
    command = resolved_command(spec)
    if runtime == "process":
        _check_script(spec)
    if command is None:
        if runtime == "process":
            raise JobFileError(
                f"{src}: [app] command is required with the process runtime "
                "(leave it out only when a container image has an ENTRYPOINT)"
            )
        if spec.app.stdout is not None:  # on Batch no shardrun script runs before an ENTRYPOINT
            raise JobFileError(f"{src}: [app] stdout = \"output\" needs [app] command")
    elif spec.app.config is None and any("{config}" in a for a in command):
        raise JobFileError(f"{src}: [app] command uses {{config}} but [app] config is not set")
    if spec.app.config is not None:
        _check_file(spec, spec.app.config, "[app] config")
    names: set[str] = set()
    for i, f in enumerate(spec.app.files):
        _check_file(spec, f, f"[app] files[{i}]")
        if f.name in names:
            raise JobFileError(f"{src}: [app] files has two files named {f.name!r}")
        names.add(f.name)
    inputs = resolve_inputs(spec)
    check_output(spec, inputs, home)
    _check_functions(spec)
    if runtime == "process":
        if spec.run.container_options:
            raise JobFileError(f"{src}: [run] container_options need a container runtime and an image")
    elif spec.app.image is None and spec.image is None:
        raise JobFileError(f"{src}: [run] runtime {runtime!r} needs an image: set [app] image "
                           "or add an [image] section")
    if spec.merge.where == "cluster" and compute_provider.open_merge(spec.run.backend, spec) is None:
        raise JobFileError(f"{src}: [merge] where = 'cluster': [run] backend {spec.run.backend!r} "
                           "cannot merge on its nodes; use where = 'client'")
    compute_provider.check_job(spec, fetch_image=fetch_image)
    if store_provider is not compute_provider:
        store_provider.check_job(spec, fetch_image=fetch_image)
    return inputs


def _check_functions(spec: JobSpec) -> None:
    """A [split] or [merge] function must take the arguments it will be called with: found now,
    not after the tasks ran."""
    from shardrun.core import merge, split
    from shardrun.core.plugins import load_callable

    for key, ref, args in (("[split] function", spec.split.function, split.FUNCTION_ARGS),
                           ("[merge] function", spec.merge.function, merge.FUNCTION_ARGS)):
        if ref is None:
            continue
        fn = load_callable(ref, spec.base_dir, f"{spec.source}: {key}")
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # no signature to read (some built-ins): it is called and may fail then
        try:
            signature.bind(*args)
        except TypeError as err:
            raise JobFileError(f"{spec.source}: {key} {ref!r}{signature} cannot be called as "
                               f"{fn.__name__}({', '.join(args)}): {err}") from None


def _check_file(spec: JobSpec, path: Path, key: str) -> None:
    full = spec.path(path)
    if not full.is_file():
        raise JobFileError(f"{spec.source}: {key}: {str(path)!r} does not exist")


# Programs that run a script named by their first argument: `python3 x.py` needs x.py.
INTERPRETERS = frozenset({"python", "python3", "bash", "sh", "dash", "zsh", "Rscript", "Rscript.exe",
                          "perl", "ruby", "node", "julia", "php", "lua", "tclsh"})


def _check_script(spec: JobSpec) -> None:
    """A script run by an interpreter must exist (beside the job file, or where its path says):
    otherwise every task would fail the same way, after the split."""
    argv = spec.app.command or []
    if not argv or Path(argv[0]).name not in INTERPRETERS:
        return
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith("-"):
            if arg in ("-c", "-e", "-m"):  # code or a module, not a script file
                return
            continue
        if "{" in arg or not Path(arg).suffix:
            return  # a placeholder or a word, not a script file
        if not spec.path(arg).is_file():
            raise JobFileError(f"{spec.source}: [app] command[{i}]: script {arg!r} does not exist "
                               f"(looked in {spec.path(arg).parent})")
        return
