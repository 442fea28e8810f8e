"""Cleanup: delete exactly what one run created, found by exact id in the ledger, never by name."""

from __future__ import annotations

import shutil
from pathlib import Path

from shardrun.core.errors import UsageError
from shardrun.core.owner import holding, run_lock
from shardrun.core.run import open_run
from shardrun.core.states import RunState
from shardrun.core.workspace import Workspace


def cleanup_run(run_id: str, *, home: Path | str | None = None, force: bool = False,
                wait: bool = False) -> list[str]:
    """Remove a run's stored data, cloud resources and scratch folders. Returns what was removed.

    The merged output (outside the store) and the ledger history are kept.
    """
    with Workspace(home) as ws, holding(run_lock(ws.home, run_id), wait=wait, run_id=run_id):
        run = open_run(ws, run_id)
        ledger = ws.ledger
        # No client owns the run (we hold its lock), but a detached Batch run's tasks may go on.
        if run.state == RunState.RUNNING and not force:
            raise UsageError(
                f"run {run_id} is marked running and no client works on it; its tasks may go on "
                "remotely. Delete it anyway with --force"
            )
        removed = run.compute_provider.cleanup(
            run.spec, ledger.resources(run_id),
            lambda kind, rid: ledger.resource_deleted(run_id, kind, rid))
        for kind, resource_id in ledger.resources(run_id):
            if kind == "namespace" and resource_id == run_id:
                if run.store.delete_namespace(resource_id):
                    removed.append(f"{run.row.storage} store: {resource_id}")
                ledger.resource_deleted(run_id, kind, resource_id)
        if run.scratch.exists():
            shutil.rmtree(run.scratch)
            removed.append(f"scratch: {run.scratch}")
        run.set_state(RunState.CLEANED, run.row.message)
        return removed
