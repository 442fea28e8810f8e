"""shardrun: split a big job into tasks, run them in parallel, merge the outputs.

The public API is exactly `__all__`; everything else may change.
"""

from __future__ import annotations

from shardrun.core.cleanup import cleanup_run
from shardrun.core.errors import JobFileError, RunInterrupted, ShardrunError, UsageError
from shardrun.core.outcome import FailedTask, RunResult
from shardrun.core.pipeline import merge_run, retry_run, run_job
from shardrun.core.preflight import validate_job
from shardrun.core.spec import JobSpec, load_spec
from shardrun.core.split import split_job
from shardrun.core.status import list_runs, run_status, task_log

__version__ = "0.1.0"

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
