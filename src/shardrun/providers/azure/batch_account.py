"""The Azure Batch account: the client, the checks before a run, and deleting by exact id.

Used by the backend (compute/batch.py), `shardrun cleanup` and `shardrun gc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shardrun.core.errors import ShardrunError, UsageError
from shardrun.core.spec import JobSpec
from shardrun.providers.azure.batch_monitor import BatchError, call, call_unless, error_code, explain
from shardrun.providers.azure.batch_tasks import RUN_METADATA
from shardrun.providers.azure.retry import AZURE_RETRY, reset_tries
from shardrun.providers.azure.settings import batch_settings

POOL, JOB = "batch-pool", "batch-job"
# A delete answered while the resource is already going (a retried delete whose answer was lost).
GONE_CODES = {"JobNotFound", "PoolNotFound", "JobBeingDeleted", "PoolBeingDeleted"}


def open_batch_client(spec: JobSpec, **client_options: Any) -> Any:
    """A BatchClient from [batch]: Entra ID (DefaultAzureCredential) or the account's shared key."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    from shardrun.core.secrets import open_secret_source, require

    settings = batch_settings(spec)
    if settings is None:
        raise UsageError(f"{spec.source}: backend 'azure-batch' needs a [batch] section (docs/azure.md)")
    credential: Any
    if settings.auth == "shared_key":
        key = require(open_secret_source(spec.secrets, spec.base_dir), settings.account_key_secret)
        credential = AzureNamedKeyCredential(settings.account, key.reveal())
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    # Every request follows shardrun's retry rule (retry.py), POST and PATCH included.
    options = {**AZURE_RETRY.client_options(), **client_options}
    return BatchClient(settings.account_url, credential, **options)


def create_owned(client: Any, kind: str, rid: str, run_id: str, create: Callable[[], Any]) -> Any:
    """Create this run's pool or job. Returns None when created, or the existing resource when
    one with this id is already the run's (by its metadata): a create retried after its answer
    was lost, or a client that died after creating it. One of another run is an error."""
    label = kind.split("-")[1]
    reset_tries()
    try:
        create()
        return None
    except Exception as err:
        if error_code(err) != f"{label.capitalize()}Exists":
            raise explain(err, f"create {label} {rid}") from err
    get = client.get_pool if kind == POOL else client.get_job
    existing = call(lambda: get(rid, select=["id", "metadata", "state"]), f"read {label} {rid}")
    owner = {m.name: m.value for m in existing.metadata or []}.get(RUN_METADATA)
    if owner != run_id:
        whose = f"run {owner}" if owner else "no shardrun run"
        raise BatchError(f"Azure Batch {label} {rid} already exists and belongs to {whose}, not to "
                         f"run {run_id}; delete it or choose another {'pool_id' if kind == POOL else 'run'}")
    return existing


def preflight(client: Any, account_url: str, image: str | None, registry: Any, store: Any,
              prefix: str) -> None:
    """Credentials, the image and the storage account, before anything costs money."""
    reset_tries()
    try:
        next(iter(client.list_pools(max_results=1, select=["id"])), None)
    except Exception as err:  # azure-core errors and connection errors alike
        raise explain(err, f"be reached at {account_url}") from err
    if image is not None and image.split("/", 1)[0] != "localhost":
        from shardrun.images.registry_api import image_exists

        if not image_exists(image, registry):
            raise ShardrunError(f"image {image} is not in its registry; push it first "
                                "(`shardrun image push`)")
    try:
        next(iter(store.list(prefix)), None)
    except Exception as err:
        raise ShardrunError(f"the storage account is not reachable: {err}") from err


def preflight_job(spec: JobSpec, store: Any, image: str | None, registry: Any) -> None:
    """`shardrun run` calls this before it splits and uploads anything."""
    settings = batch_settings(spec)
    assert settings is not None
    # Listing a container that does not exist is one real request: it proves the credentials.
    preflight(open_batch_client(spec), settings.account_url, image, registry, store,
              "shardrun-preflight/")


def _delete(client: Any, collection: str, rid: str, wait: bool) -> None:
    """DELETE /jobs/{id} or /pools/{id}. Waiting polls until it is gone; not waiting sends the one
    request (the SDK's poller would keep a thread polling after the run is over)."""
    from urllib.parse import quote

    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    if wait:
        begin = client.begin_delete_job if collection == "jobs" else client.begin_delete_pool
        begin(rid, polling_interval=1).result()
        return
    request = HttpRequest("DELETE", f"/{collection}/{quote(rid, safe='')}",
                          params={"api-version": client._config.api_version})
    response = client.send_request(request)
    if response.status_code >= 400:
        raise HttpResponseError(response=response)


def delete_job(client: Any, job_id: str, wait: bool = False) -> None:
    _delete_quietly(client, "jobs", job_id, wait)


def delete_pool(client: Any, pool_id: str, wait: bool = False) -> None:
    _delete_quietly(client, "pools", pool_id, wait)


def _delete_quietly(client: Any, collection: str, rid: str, wait: bool) -> None:
    """Gone or going already counts as deleted."""
    reset_tries()
    try:
        _delete(client, collection, rid, wait)
    except Exception as err:
        if error_code(err) not in GONE_CODES and getattr(err, "status_code", None) != 404:
            raise explain(err, f"delete {collection[:-1]} {rid}") from err


def delete_run_resources(spec: JobSpec, resources: list[tuple[str, str]],
                         on_deleted: Callable[[str, str], None]) -> list[str]:
    """`shardrun cleanup`: the run's recorded Batch jobs and pools, each by its exact id."""
    batch = [(k, r) for k, r in resources if k in (JOB, POOL)]
    if not batch:
        return []
    client = open_batch_client(spec)
    removed = []
    for kind, rid in sorted(batch, key=lambda kr: kr[0] != JOB):  # jobs before their pool
        (delete_job if kind == JOB else delete_pool)(client, rid, wait=True)
        on_deleted(kind, rid)
        removed.append(f"Batch {kind.split('-')[1]}: {rid}")
    return removed


def pool_state(client: Any, pool_id: str) -> str | None:
    """The pool's state ("active", "deleting"), or None when there is no such pool."""
    pool = call_unless(lambda: client.get_pool(pool_id, select=["id", "state"]), f"read pool {pool_id}",
                       ("PoolNotFound",))
    return None if pool is None else str(pool.state).rsplit(".", 1)[-1].lower()


def check_identity(client: Any, pool_id: str, identity: str) -> None:
    """The pool must have the identity: only Azure Resource Manager can give it one."""
    pool = call(lambda: client.get_pool(pool_id, select=["id", "identity"]), f"read pool {pool_id}")
    held = pool.identity.user_assigned_identities if pool.identity is not None else None
    ids = [u.resource_id.lower() for u in held or []]
    if identity.lower() not in ids:
        raise BatchError(f"pool {pool_id} does not have the managed identity [batch] "
                         f"node_identity names ({identity}); add it to the pool (Azure portal "
                         "or Azure Resource Manager), or remove node_identity (docs/azure.md)")


def end_job_with_its_tasks(client: Any, job_id: str) -> None:
    """allTasksCompleteMode = terminatejob: the job ends once every task it has ended. A job that
    has completed already is what was asked: its tasks ended first, or this update was applied and
    its answer lost (a retry then gets JobCompleted)."""
    from azure.batch import models as bm

    update = bm.BatchJobUpdateOptions(all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB)
    call_unless(lambda: client.update_job(job_id, update), f"update job {job_id}", ("JobCompleted",))
