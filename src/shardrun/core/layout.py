"""Where everything of a run lives in storage. The one place that knows the key layout.

A key is `<run-id>/<area>/...`. The first segment is the run's namespace: a folder in the local
store, a container in Blob Storage. Run ids are valid Azure container names, so no mapping is needed.

    <run>/config/<name>                        the app's config file, shared by every task
    <run>/files/<name>                         extra read-only files every task gets
    <run>/inputs/<task-id>/<name>              one input piece per task
    <run>/sources/<n>/<name>                   the inputs themselves, when pieces go by reference
    <run>/outputs/<task-id>/<name>             one output per task, written once on success
    <run>/logs/<task-id>/<attempt>/stdout.txt  per-attempt logs (and stderr.txt)
"""

from __future__ import annotations

import re
import secrets
import time

RUN_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
TASK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_run_id(job_name: str) -> str:
    """`<slug>-<yymmdd>-<6 random chars>`: unique, sortable by day, a valid Azure container name."""
    slug = re.sub(r"[^a-z0-9]+", "-", job_name.lower()).strip("-")[:24].strip("-") or "job"
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return f"{slug}-{time.strftime('%y%m%d')}-{suffix}"


def is_run_id(text: str) -> bool:
    return bool(RUN_ID_RE.match(text))


def task_id(index: int, total: int) -> str:
    """Zero-padded so lexical order is task order: task-00001 ... task-12000."""
    width = max(5, len(str(total)))
    return f"task-{index:0{width}d}"


def run_prefix(run_id: str) -> str:
    return f"{run_id}/"


def config_key(run_id: str, name: str) -> str:
    return f"{run_id}/config/{name}"


def file_key(run_id: str, name: str) -> str:
    return f"{run_id}/files/{name}"


def app_key(run_id: str, name: str) -> str:
    """A program file the command names, shipped to remote nodes (Azure Batch)."""
    return f"{run_id}/app/{name}"


def input_key(run_id: str, task: str, name: str) -> str:
    return f"{run_id}/inputs/{task}/{name}"


def source_key(run_id: str, index: int, name: str) -> str:
    """Input file `index` (0-based, split order) of a run whose pieces go by reference."""
    return f"{run_id}/sources/{index}/{name}"


def sources_prefix(run_id: str) -> str:
    return f"{run_id}/sources/"


def source_index(key: str) -> int:
    """The input's index from a source key."""
    return int(key.split("/sources/", 1)[1].split("/", 1)[0])


def input_name(key: str) -> str:
    """The input piece's name from its key (a folder piece's key ends with '/')."""
    return key.rstrip("/").rsplit("/", 1)[-1]


def output_key(run_id: str, task: str, name: str) -> str:
    return f"{run_id}/outputs/{task}/{name}"


def log_key(run_id: str, task: str, attempt: int, stream: str) -> str:
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"unknown log stream {stream!r}")
    return f"{run_id}/logs/{task}/{attempt}/{stream}.txt"


def split_key(key: str) -> tuple[str, str]:
    """'run/inputs/x' -> ('run', 'inputs/x'): namespace and the path inside it."""
    namespace, _, rest = key.partition("/")
    if not namespace or not rest:
        raise ValueError(f"key {key!r} has no namespace")
    return namespace, rest
