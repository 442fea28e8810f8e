"""`shardrun init --app PATH`: a wrapper script, a Dockerfile and a job file around an existing app.

The wrapper turns the task contract (INPUT_PATH, OUTPUT_PATH, CONFIG_PATH) into the app's
arguments and `exec`s it, with `set -euo pipefail` and every expansion quoted. The files build with
`shardrun image build` and run with `shardrun run` as written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from shardrun.core.errors import UsageError

PLACEHOLDER_VARS = {"input": "INPUT_PATH", "output": "OUTPUT_PATH", "config": "CONFIG_PATH"}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
WRAPPER = "run-task.sh"
DOCKERFILE = "Dockerfile"
VERSION = "0.1.0"


@dataclass(frozen=True)
class AppScaffold:
    """What to write. `args` uses the job file's placeholders: {input} {output} {config}."""

    app: Path
    job: Path
    input: str = "input.txt"
    args: str | None = None
    config: str | None = None
    base: str = "scratch"
    method: str = "lines"
    per_task: int = 100
    base_rootfs: Path | None = None  # a root filesystem (folder or tarball) to import as the base


def shell_word(arg: str) -> str:
    """One argv item as a shell word: literal text single-quoted, placeholders as "${VAR}"."""
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(arg):
        if m.group(1) not in PLACEHOLDER_VARS:
            known = ", ".join("{" + k + "}" for k in PLACEHOLDER_VARS)
            raise UsageError(f"--args: unknown placeholder {m.group(0)} (known: {known})")
        if m.start() > pos:
            parts.append(shlex.quote(arg[pos:m.start()]))
        parts.append(f'"${{{PLACEHOLDER_VARS[m.group(1)]}}}"')
        pos = m.end()
    if pos < len(arg) or not parts:
        parts.append(shlex.quote(arg[pos:]))
    return "".join(parts)


def static_busybox() -> Path:
    """This machine's static busybox (Debian: busybox-static), for a FROM scratch image."""
    found = shutil.which("busybox")
    if found is None:
        raise UsageError("--base scratch needs a static busybox (apt-get install busybox-static), "
                         "or pass --base IMAGE, e.g. --base debian:bookworm-slim")
    path = Path(found).resolve()
    if b".interp" in path.read_bytes():  # a dynamic binary names its loader in .interp
        raise UsageError(f"{path} is not statically linked (apt-get install busybox-static), "
                         "or pass --base IMAGE")
    return path


def scaffold_app(s: AppScaffold, *, force: bool = False) -> list[Path]:
    """Write the wrapper, Dockerfile, .dockerignore and job file beside `s.job`. Returns the files."""
    folder = s.job.parent.resolve()
    app = s.app.resolve()
    if not app.is_file():
        raise UsageError(f"--app: {s.app} is not a file")
    if not os.access(app, os.X_OK):
        raise UsageError(f"--app: {s.app} is not executable (chmod +x it)")
    try:
        app_rel = app.relative_to(folder).as_posix()
    except ValueError:
        raise UsageError(f"--app: {s.app} must be inside {folder}, the build context") from None
    args = shlex.split(s.args) if s.args is not None else (
        ["-i", "{input}", "-o", "{output}"] + (["-c", "{config}"] if s.config else []))
    app_dest = f"/app/{app.name}"
    command = " ".join(shell_word(a) for a in [app_dest, *args])
    uses_config = any("{config}" in a for a in args)
    if uses_config and not s.config:
        raise UsageError("--args uses {config}: also pass --config FILE")
    # the whole file name: `app` and `app.py` are different apps and get different images
    name = re.sub(r"[^a-z0-9]+", "-", app.name.lower()).strip("-") or "app"
    base, shell = s.base, "/bin/bash"  # busybox sh and bash both know pipefail; dash may not
    if s.base_rootfs is not None:
        base = f"localhost/{name}-base:{VERSION}"
        shell = "/bin/bash" if rootfs_has(s.base_rootfs, "bin/bash") else "/bin/sh"
    scratch = base == "scratch" and s.base_rootfs is None
    if scratch:
        shell = "/bin/sh"
    values = {
        "shell": shell,
        "uses_config": uses_config, "command": command, "base": base,
        "app_src": json.dumps(app_rel), "app_dest": json.dumps(app_dest),
        "app_pattern": re.sub(r"([*?\[\]\\!#])", r"\\\1", app_rel),
        "job_name": s.job.name, "app": s.app.as_posix(), "name": name,
        "image_name": f"localhost/{name}", "version": VERSION, "config": s.config,
        "input": s.input, "method": s.method, "per_task": s.per_task,
        "output": f"result{Path(s.input).suffix}" if s.method != "files" else "result.txt",
    }
    outputs = {
        folder / WRAPPER: "app-wrapper.sh.j2",
        folder / DOCKERFILE: "app-Dockerfile.j2",
        folder / ".dockerignore": "app-dockerignore.j2",
        s.job.resolve(): "app-job.toml.j2",
    }
    targets = [*outputs, *([folder / "busybox"] if scratch else [])]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(p.name for p in existing)} already exist(s) in {folder}; "
                         "use --force to overwrite")
    busybox = static_busybox() if scratch else None
    if s.base_rootfs is not None:
        from shardrun.images.engine import find_engine, import_rootfs

        import_rootfs(s.base_rootfs, find_engine("auto"), base)
    env = jinja2.Environment(loader=jinja2.PackageLoader("shardrun", "templates"),
                             keep_trailing_newline=True, autoescape=False)  # noqa: S701 (not HTML)
    for path, template in outputs.items():
        path.write_text(env.get_template(template).render(values), encoding="utf-8")
    (folder / WRAPPER).chmod(0o755)
    if busybox is not None:
        shutil.copyfile(busybox, folder / "busybox")
        (folder / "busybox").chmod(0o755)
    return targets


def rootfs_has(rootfs: Path, member: str) -> bool:
    """Whether a root filesystem (a folder or a tarball) has `member` (e.g. 'bin/bash')."""
    if rootfs.is_dir():
        return (rootfs / member).exists() or (rootfs / member).is_symlink()
    try:
        with tarfile.open(rootfs) as tar:
            names = {n.removeprefix("./") for n in tar.getnames()}
    except (OSError, tarfile.TarError) as err:
        raise UsageError(f"--base-rootfs: {rootfs} is not a folder or a readable tarball ({err})") from None
    return member in names
