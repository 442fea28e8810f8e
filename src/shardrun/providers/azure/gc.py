"""Garbage collection: find shardrun's containers, pools and jobs that no live run owns, and delete
them on request.

Everything is recognised by its metadata (tool and run, see shardrun.providers.azure.blob), never by
its name: a container whose name merely looks like or contains a run id is never touched.

A run is kept, from any home or machine, when:
- this home's ledger has it splitting, running or merging; or interrupted or merge-failed, which can
  be resumed, unless `include_interrupted`;
- its container's heartbeat (written by its client every minute, see core/execute.py) is younger
  than HEARTBEAT_GRACE and its state there is live; or that state is resumable (interrupted, or live
  with a stale heartbeat: its client died), unless `include_interrupted`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shardrun.core.ledger import Ledger
from shardrun.core.provider import GcRequest, Leftover
from shardrun.core.spec import JobSpec, SecretsSection
from shardrun.core.states import UNFINISHED, RunState
from shardrun.providers.azure.blob import META_HEARTBEAT, META_STATE
from shardrun.providers.azure.settings import StorageSection, batch_settings, storage_settings

CONTAINER, POOL, JOB = "blob container", "Batch pool", "Batch job"
HEARTBEAT_GRACE = 10 * 60.0  # seconds: ten missed heartbeats mean the client is gone
WORKING = frozenset({RunState.SPLITTING, RunState.RUNNING, RunState.MERGING})
# A stale heartbeat in these means a client died with work left that `shardrun run` picks up; one
# that died while splitting left nothing to resume (the next run starts afresh).
RESUMABLE = frozenset({RunState.RUNNING, RunState.MERGING, RunState.INTERRUPTED, RunState.MERGE_FAILED})


def _owner(ledger: Ledger, run_id: str, meta: dict[str, str] | None, now: float,
           include_interrupted: bool) -> tuple[bool, str]:
    """(keep, why): whether a run's resources must stay, from this ledger and the run's heartbeat."""
    run = ledger.get_run(run_id)
    if run is not None and run.status in UNFINISHED and (
            run.status in WORKING or not include_interrupted):
        return True, f"run {run.status}"
    meta = meta or {}
    state = meta.get(META_STATE, "")
    try:
        beat = float(meta.get(META_HEARTBEAT, ""))
    except ValueError:
        beat = 0.0
    if state in WORKING and now - beat < HEARTBEAT_GRACE:
        return True, f"run {state} on another machine"
    if state in RESUMABLE and not include_interrupted:
        return True, f"run {state}, resumable"
    if run is None:
        return False, "not in this ledger" + (f", last seen {state}" if state else "")
    return False, f"run {run.status}"


def find_leftovers(store: Any, ledger: Ledger, older_than: float, now: float | None = None,
                   include_interrupted: bool = False) -> list[Leftover]:
    """shardrun containers created more than `older_than` seconds ago that no live run owns."""
    now = time.time() if now is None else now
    found = []
    for name, meta, created in store.shardrun_containers():
        run_id = meta.get("shardrun_run", "")
        if run_id != name or now - created < older_than:
            continue
        keep, why = _owner(ledger, run_id, meta, now, include_interrupted)
        if not keep:
            found.append(Leftover(CONTAINER, name, run_id, created, why))
    return sorted(found, key=lambda x: x.created)


def open_gc_store(spec: JobSpec | None = None, account_url: str | None = None) -> Any:
    """The blob store gc looks at: a job file's [storage] and [secrets], or the defaults."""
    from shardrun.providers.azure.blob import open_blob_store

    if spec is not None:
        settings, secrets, base_dir = storage_settings(spec), spec.secrets, spec.base_dir
    else:
        settings, secrets, base_dir = StorageSection(), SecretsSection(), Path.cwd()
    if account_url:
        settings = settings.model_copy(update={"account_url": account_url.rstrip("/")})
    return open_blob_store(settings=settings, secrets=secrets, base_dir=base_dir)


def collect(request: GcRequest, store: Any = None) -> list[tuple[Leftover, bool]]:
    """Blob containers: list leftovers, and delete them when asked. (leftover, deleted) pairs."""
    options = request.options or {}
    if store is None:
        store = open_gc_store(request.spec, options.get("account_url"))
    ledger = request.ledger
    out = []
    for item in find_leftovers(store, ledger, request.older_than,
                               include_interrupted=request.include_interrupted):
        deleted = False
        if request.delete:
            deleted = store.delete_namespace(item.resource_id)
            if ledger.get_run(item.run_id) is not None:
                ledger.resource_deleted(item.run_id, "namespace", item.resource_id)
                ledger.set_run_status(item.run_id, RunState.CLEANED, "storage removed by shardrun gc")
        out.append((item, deleted))
    return out


def find_batch_leftovers(client: Any, ledger: Ledger, older_than: float, now: float | None = None,
                         heartbeats: dict[str, dict[str, str]] | None = None,
                         include_interrupted: bool = False) -> list[Leftover]:
    """Pools and jobs whose metadata names a shardrun run that is not live, older than
    `older_than`. Found by metadata, never by name; a pool given as [batch] pool_id has none."""
    now = time.time() if now is None else now
    found = []
    listings = ((POOL, client.list_pools(select=["id", "metadata", "creationTime"])),
                (JOB, client.list_jobs(select=["id", "metadata", "creationTime"])))
    for kind, items in listings:
        for item in items:
            meta = {m.name: m.value for m in (item.metadata or [])}
            run_id = meta.get("shardrun.run")
            created = item.creation_time.timestamp() if item.creation_time else now
            if not run_id or now - created < older_than:
                continue
            keep, why = _owner(ledger, run_id, (heartbeats or {}).get(run_id), now,
                               include_interrupted)
            if not keep:
                found.append(Leftover(kind, item.id, run_id, created, why))
    return sorted(found, key=lambda x: (x.kind != JOB, x.created))  # jobs before pools


def collect_batch(request: GcRequest, client: Any = None) -> list[tuple[Leftover, bool]]:
    """The Batch side of gc, for the account in the job file's [batch] (none without a job file)."""
    from shardrun.providers.azure.batch_account import (
        JOB as JOB_KIND,
    )
    from shardrun.providers.azure.batch_account import (
        POOL as POOL_KIND,
    )
    from shardrun.providers.azure.batch_account import delete_job, delete_pool, open_batch_client

    spec = request.spec
    if spec is None or batch_settings(spec) is None:
        return []
    client = client if client is not None else open_batch_client(spec)
    ledger = request.ledger
    # The run's container carries its heartbeat: a pool or job of a live run is kept.
    store = open_gc_store(spec, (request.options or {}).get("account_url"))
    heartbeats = {name: meta for name, meta, _ in store.shardrun_containers()}
    out = []
    for item in find_batch_leftovers(client, ledger, request.older_than, heartbeats=heartbeats,
                                     include_interrupted=request.include_interrupted):
        if request.delete:
            (delete_job if item.kind == JOB else delete_pool)(client, item.resource_id, wait=True)
            if ledger.get_run(item.run_id) is not None:
                ledger.resource_deleted(item.run_id, JOB_KIND if item.kind == JOB else POOL_KIND,
                                        item.resource_id)
        out.append((item, request.delete))
    return out
