"""The task contract in code: the environment every task sees, on every backend.

docs/task-contract.md is the written form; keep the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path

# Variables passed through from the client. Nothing else is inherited, so a secret in the client's
# environment (a storage key, a connection string) never reaches a task or its logs.
INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SHELL",
             "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV")


def base_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    return env


def task_environment(
    *,
    run_id: str,
    task_id: str,
    attempt: int,
    input_path: Path,
    output_path: Path,
    config_path: Path | None,
    task_dir: Path,
    working_dir: Path,
    shared_dir: Path,
    node_root: Path,
    node_id: str,
    pool_id: str = "local",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The contract variables. `extra` (the job's [app] env) cannot override them."""
    env = dict(extra or {})
    env.update(
        {
            "INPUT_PATH": str(input_path),
            "OUTPUT_PATH": str(output_path),
            "CONFIG_PATH": str(config_path) if config_path else "",
            "SHARDRUN_RUN_ID": run_id,
            "SHARDRUN_TASK_ID": task_id,
            "SHARDRUN_ATTEMPT": str(attempt),
            "AZ_BATCH_JOB_ID": run_id,
            "AZ_BATCH_TASK_ID": task_id,
            "AZ_BATCH_TASK_DIR": str(task_dir),
            "AZ_BATCH_TASK_WORKING_DIR": str(working_dir),
            "AZ_BATCH_NODE_SHARED_DIR": str(shared_dir),
            "AZ_BATCH_NODE_ROOT_DIR": str(node_root),
            "AZ_BATCH_NODE_ID": node_id,
            "AZ_BATCH_POOL_ID": pool_id,
        }
    )
    return env
