"""Cleanup: delete exactly what one run created, found by exact id in the ledger, never by name."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import UsageError
from .workspace import Workspace, get_run, run_store, spec_for_run


def cleanup_run(run_id: str, *, home: Path | str | None = None, force: bool = False) -> list[str]:
    """Remove a run's stored data and scratch folders. Returns what was removed.

    The merged output (outside the store) and the ledger history are kept.
    """
    ws = Workspace(home)
    try:
        run = get_run(ws, run_id)
        if run.status in ("running", "splitting") and not force:
            raise UsageError(
                f"run {run_id} is marked {run.status}; if its client is gone, use --force"
            )
        removed = []
        resources = ws.ledger.resources(run_id)
        if any(kind.startswith("batch-") for kind, _ in resources):
            from .compute.batch_account import delete_run_resources

            removed += delete_run_resources(
                spec_for_run(run), resources,
                lambda kind, rid: ws.ledger.resource_deleted(run_id, kind, rid))
        store = run_store(ws, run)
        for kind, resource_id in ws.ledger.resources(run_id):
            if kind == "namespace" and resource_id == run_id:
                if store.delete_namespace(resource_id):
                    removed.append(f"{run.storage} store: {resource_id}")
                ws.ledger.resource_deleted(run_id, kind, resource_id)
        scratch = ws.scratch(run_id)
        if scratch.exists():
            shutil.rmtree(scratch)
            removed.append(f"scratch: {scratch}")
        ws.ledger.set_run_status(run_id, "cleaned", run.message)
        return removed
    finally:
        ws.close()
