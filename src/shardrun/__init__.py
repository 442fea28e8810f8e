"""shardrun: split a big job into tasks, run them in parallel, merge the outputs.

The public API is exactly `__all__`; everything else may change. Names are imported on first use
(PEP 562), so `import shardrun.anything` and `shardrun --version` do not load the whole library.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from shardrun.version import __version__

if TYPE_CHECKING:
    from shardrun.core.cleanup import cleanup_run
    from shardrun.core.errors import JobFileError, RunInterrupted, ShardrunError, UsageError
    from shardrun.core.outcome import FailedTask, RunResult
    from shardrun.core.pipeline import merge_run, retry_run
    from shardrun.core.preflight import validate_job
    from shardrun.core.progress import ProgressView
    from shardrun.core.spec import JobSpec, load_spec
    from shardrun.core.split import split_job
    from shardrun.core.status import list_runs, run_status, task_log

_LAZY = {
    "cleanup_run": "shardrun.core.cleanup",
    "JobFileError": "shardrun.core.errors",
    "RunInterrupted": "shardrun.core.errors",
    "ShardrunError": "shardrun.core.errors",
    "UsageError": "shardrun.core.errors",
    "FailedTask": "shardrun.core.outcome",
    "RunResult": "shardrun.core.outcome",
    "merge_run": "shardrun.core.pipeline",
    "retry_run": "shardrun.core.pipeline",
    "validate_job": "shardrun.core.preflight",
    "JobSpec": "shardrun.core.spec",
    "load_spec": "shardrun.core.spec",
    "split_job": "shardrun.core.split",
    "list_runs": "shardrun.core.status",
    "run_status": "shardrun.core.status",
    "task_log": "shardrun.core.status",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shardrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def run_job(job_path: Path | str, *, home: Path | str | None = None, new: bool = False,
            progress: ProgressView | None = None, wait: bool = False,
            deadline: float | None = None, budget: float | None = None) -> RunResult:
    """Run a job file, or resume its unfinished run (shardrun.core.pipeline.run_job). A new run of a
    job file with [split] per_task = "auto" gets its size from the planner: the balanced plan, or
    the cheapest that ends within `deadline` seconds, or the fastest within `budget` USD."""
    from shardrun.core import pipeline
    from shardrun.planning.autosize import shard_sizer  # the planner only when a run starts

    return pipeline.run_job(job_path, home=home, new=new, progress=progress, wait=wait,
                            size_shards=shard_sizer(deadline=deadline, budget=budget))


__all__ = [
    "FailedTask",
    "JobFileError",
    "JobSpec",
    "RunInterrupted",
    "RunResult",
    "ShardrunError",
    "UsageError",
    "__version__",
    "cleanup_run",
    "list_runs",
    "load_spec",
    "merge_run",
    "retry_run",
    "run_job",
    "run_status",
    "split_job",
    "task_log",
    "validate_job",
]
