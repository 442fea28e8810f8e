"""The Azure Batch account: the client, the checks before a run, and deleting by exact id.

Used by the backend (compute/batch.py), `shardrun cleanup` and `shardrun gc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shardrun.core.errors import ShardrunError, UsageError
from shardrun.core.spec import JobSpec
from shardrun.providers.azure.batch_monitor import error_code, explain
from shardrun.providers.azure.settings import batch_settings

POOL, JOB = "batch-pool", "batch-job"


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
    # Whole requests: bounded retries that honour Retry-After (batch_submit relies on this).
    options = {"retry_total": 6, "retry_backoff_factor": 0.5, "retry_backoff_max": 30}
    options.update(client_options)
    return BatchClient(settings.account_url, credential, **options)


def preflight(client: Any, account_url: str, image: str | None, registry: Any, store: Any,
              prefix: str) -> None:
    """Credentials, the image and the storage account, before anything costs money."""
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
    try:
        _delete(client, "jobs", job_id, wait)
    except Exception as err:
        if error_code(err) != "JobNotFound" and getattr(err, "status_code", None) != 404:
            raise explain(err, f"delete job {job_id}") from err


def delete_pool(client: Any, pool_id: str, wait: bool = False) -> None:
    try:
        _delete(client, "pools", pool_id, wait)
    except Exception as err:
        if error_code(err) != "PoolNotFound" and getattr(err, "status_code", None) != 404:
            raise explain(err, f"delete pool {pool_id}") from err


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
