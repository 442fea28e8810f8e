"""Garbage collection: find shardrun's containers that no live run owns, and delete them on request.

Containers are recognised by their metadata (tool and run, see shardrun.storage.blob), never by
their name: a container whose name merely looks like or contains a run id is never touched. A run is
live while it is splitting, running or interrupted (it can be resumed); its containers are kept
whatever their age.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .ledger import Ledger
from .spec import JobSpec, SecretsSection, StorageSection, load_spec, parse_duration
from .storage import open_store
from .workspace import Workspace

LIVE_STATUSES = ("splitting", "running", "interrupted")
_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dw])\s*$")


def parse_age(text: str) -> float:
    """'7d', '2w', '36h', '90m' -> seconds."""
    m = _DAYS.match(text.lower())
    if m:
        return float(m.group(1)) * (86400.0 if m.group(2) == "d" else 7 * 86400.0)
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an age (try '7d', '2w' or '36h')") from None


@dataclass(frozen=True)
class Leftover:
    container: str
    run_id: str
    created: float
    why: str  # "not in this ledger" or "run <status>"


def find_leftovers(store: Any, ledger: Ledger, older_than: float,
                   now: float | None = None) -> list[Leftover]:
    """shardrun containers created more than `older_than` seconds ago that no live run owns."""
    now = time.time() if now is None else now
    found = []
    for name, meta, created in store.shardrun_containers():
        run_id = meta.get("shardrun_run", "")
        if run_id != name or now - created < older_than:
            continue
        run = ledger.get_run(run_id)
        if run is not None and run.status in LIVE_STATUSES:
            continue
        found.append(Leftover(name, run_id, created,
                              "not in this ledger" if run is None else f"run {run.status}"))
    return sorted(found, key=lambda x: x.created)


def open_gc_store(job: Path | None = None, account_url: str | None = None) -> Any:
    """The blob store gc looks at: a job file's [storage] and [secrets], or the defaults."""
    if job is not None:
        spec: JobSpec = load_spec(job)
        settings, secrets, base_dir = spec.storage, spec.secrets, spec.base_dir
    else:
        settings, secrets, base_dir = StorageSection(), SecretsSection(), Path.cwd()
    if account_url:
        settings = settings.model_copy(update={"account_url": account_url.rstrip("/")})
    return open_store("blob", settings=settings, secrets=secrets, base_dir=base_dir, progress=False)


def collect(*, older_than: float, delete: bool, home: Path | str | None = None,
            store: Any = None, job: Path | None = None,
            account_url: str | None = None) -> list[tuple[Leftover, bool]]:
    """List leftovers, and delete them when `delete`. Returns (leftover, deleted) pairs."""
    ws = Workspace(home)
    try:
        store = store if store is not None else open_gc_store(job, account_url)
        out = []
        for item in find_leftovers(store, ws.ledger, older_than):
            deleted = False
            if delete:
                deleted = store.delete_namespace(item.container)
                if ws.ledger.get_run(item.run_id) is not None:
                    ws.ledger.resource_deleted(item.run_id, "namespace", item.container)
                    ws.ledger.set_run_status(item.run_id, "cleaned", "storage removed by shardrun gc")
            out.append((item, deleted))
        return out
    finally:
        ws.close()


@dataclass(frozen=True)
class BatchLeftover:
    kind: str  # "batch-pool" | "batch-job"
    resource_id: str
    run_id: str
    created: float
    why: str


def find_batch_leftovers(client: Any, ledger: Ledger, older_than: float,
                         now: float | None = None) -> list[BatchLeftover]:
    """Pools and jobs whose metadata names a shardrun run that is not live, older than
    `older_than`. Found by metadata, never by name; a pool given as [batch] pool_id has none."""
    now = time.time() if now is None else now
    found = []
    listings = (("batch-pool", client.list_pools(select=["id", "metadata", "creationTime"])),
                ("batch-job", client.list_jobs(select=["id", "metadata", "creationTime"])))
    for kind, items in listings:
        for item in items:
            meta = {m.name: m.value for m in (item.metadata or [])}
            run_id = meta.get("shardrun.run")
            created = item.creation_time.timestamp() if item.creation_time else now
            if not run_id or now - created < older_than:
                continue
            run = ledger.get_run(run_id)
            if run is not None and run.status in LIVE_STATUSES:
                continue
            found.append(BatchLeftover(kind, item.id, run_id, created,
                                       "not in this ledger" if run is None else f"run {run.status}"))
    return sorted(found, key=lambda x: (x.kind != "batch-job", x.created))  # jobs before pools


def collect_batch(*, older_than: float, delete: bool, job: Path, home: Path | str | None = None,
                  client: Any = None) -> list[tuple[BatchLeftover, bool]]:
    """The Batch side of gc, for the account in a job file's [batch]."""
    from .compute.batch_account import delete_job, delete_pool, open_batch_client

    spec = load_spec(job)
    if spec.batch is None:
        return []
    client = client if client is not None else open_batch_client(spec)
    ws = Workspace(home)
    try:
        out = []
        for item in find_batch_leftovers(client, ws.ledger, older_than):
            if delete:
                (delete_job if item.kind == "batch-job" else delete_pool)(client, item.resource_id,
                                                                          wait=True)
                if ws.ledger.get_run(item.run_id) is not None:
                    ws.ledger.resource_deleted(item.run_id, item.kind, item.resource_id)
            out.append((item, delete))
        return out
    finally:
        ws.close()
