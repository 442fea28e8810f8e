"""Runs written straight into the ledger, as a backend records them, for tests of what reads it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardrun.core import layout
from shardrun.core.ledger import RunRow
from shardrun.core.spec import parse_spec
from shardrun.core.workspace import Workspace


@dataclass(frozen=True)
class Attempt:
    task: int  # task number, 1-based
    attempt: int
    worker: str
    start: float  # seconds after the run's start
    end: float | None
    result: str = "succeeded"


def record_run(job_path: Path, sections: dict[str, Any], attempts: Sequence[Attempt], *, tasks: int,
               created_at: float = 1_790_000_000.0, status: str = "succeeded") -> str:
    """A run of `tasks` tasks of the job `sections` (a job file as a dict), with `attempts`."""
    spec = parse_spec(sections, job_path, job_path.parent)
    run_id = layout.new_run_id(job_path.stem)
    rows = [(layout.task_id(i, tasks), i, f"{run_id}/inputs/x{i}", 10, f"{run_id}/outputs/x{i}")
            for i in range(1, tasks + 1)]
    with Workspace() as ws:
        ws.ledger.create_run(RunRow(run_id, spec.name, str(job_path.resolve()), spec.fingerprint(),
                                    json.dumps(spec.model_dump(mode="json")), spec.run.backend,
                                    spec.run.storage, "running", created_at, None, None, None), rows)
        with ws.ledger.transaction():
            for a in attempts:
                task_id = layout.task_id(a.task, tasks)
                ws.ledger.attempt_started(run_id, task_id, a.attempt, a.worker, None, created_at + a.start)
                if a.end is not None:
                    ws.ledger.attempt_finished(run_id, task_id, a.attempt, created_at + a.end,
                                               0 if a.result == "succeeded" else 1, a.result,
                                               None if a.result == "succeeded" else a.result)
            final = {a.task: a.result for a in sorted(attempts, key=lambda a: a.attempt)}
            for task, result in final.items():
                state = {"succeeded": "succeeded", "running": "running"}.get(result, "failed")
                ws.ledger.set_task_state(run_id, [layout.task_id(task, tasks)], state)
            if status in ("succeeded", "failed"):
                ws.ledger.set_run_status(run_id, "merging" if status == "succeeded" else "failed")
                if status == "succeeded":
                    ws.ledger.set_run_status(run_id, "succeeded")
    return run_id


def batch_job(account_url: str = "http://127.0.0.1:9", *, per_task: int = 4, nodes: int = 2,
              slots: int = 2, **batch: Any) -> dict[str, Any]:
    """A job file for Azure Batch, as a dict."""
    return {
        "app": {"command": ["python3", "app.py", "{input}", "{output}"]},
        "split": {"input": "in.txt", "method": "lines", "per_task": per_task},
        "merge": {"output": "out.txt"},
        "run": {"backend": "azure-batch", "storage": "blob"},
        "batch": {"account_url": account_url, "vm_size": "Standard_D2s_v5", "dedicated_nodes": nodes,
                  "task_slots_per_node": slots, **batch},
    }


def local_job(*, per_task: int = 4, concurrency: int = 3) -> dict[str, Any]:
    return {
        "app": {"command": ["python3", "app.py", "{input}", "{output}"]},
        "split": {"input": "in.txt", "method": "lines", "per_task": per_task},
        "merge": {"output": "out.txt"},
        "run": {"concurrency": concurrency},
    }


def write_toml(path: Path, sections: dict[str, Any]) -> Path:
    """The same job as a file, with its input (40 lines) and app beside it."""
    from .helpers import write_job

    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "in.txt").write_text("".join(f"line {i}\n" for i in range(40)))
    (path.parent / "app.py").write_text("import shutil, sys\nshutil.copy(sys.argv[1], sys.argv[2])\n")
    return write_job(path.parent, sections, name=path.name)
