"""Cleanup: delete exactly what one run created, found by exact id in the ledger, never by name."""

from __future__ import annotations

import shutil
from pathlib import Path

from shardrun.core.errors import UsageError
from shardrun.core.run import open_run
from shardrun.core.states import RunState
from shardrun.core.workspace import Workspace


def cleanup_run(run_id: str, *, home: Path | str | None = None, force: bool = False) -> list[str]:
    """Remove a run's stored data, cloud resources and scratch folders. Returns what was removed.

    The merged output (outside the store) and the ledger history are kept.
    """
    with Workspace(home) as ws:
        run = open_run(ws, run_id)
        ledger = ws.ledger
        if run.state in (RunState.RUNNING, RunState.SPLITTING, RunState.MERGING) and not force:
            raise UsageError(
                f"run {run_id} is marked {run.state}; if its client is gone, use --force"
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
