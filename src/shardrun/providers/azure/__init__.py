"""The azure provider: tasks on Azure Batch, the store in Blob Storage, secrets in Key Vault.

It owns the job file's [batch] and [storage] sections. The Azure SDKs are imported only when a run
needs them, so a local job never pays for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shardrun.core.compute import ComputeBackend, PieceMode, SplitFacts
from shardrun.core.containers import job_image
from shardrun.core.errors import JobFileError
from shardrun.core.provider import Cost, GcRequest, Leftover
from shardrun.core.secrets import SecretSource
from shardrun.core.spec import JobSpec
from shardrun.core.store import Store
from shardrun.providers.azure.settings import (
    BatchSection,
    StorageSection,
    batch_settings,
    storage_settings,
)

BATCH = "azure-batch"


class AzureProvider:
    name = "azure"
    computes: tuple[str, ...] = (BATCH,)
    stores: tuple[str, ...] = ("blob",)
    secret_sources: tuple[str, ...] = ("keyvault",)
    sections: Mapping[str, type[BaseModel]] = {"batch": BatchSection, "storage": StorageSection}

    def check_job(self, spec: JobSpec, *, fetch_image: bool) -> None:
        if spec.run.backend != BATCH:
            return  # only the store is ours; it is checked when it is opened
        src = spec.source
        if batch_settings(spec) is None:
            raise JobFileError(f"{src}: [run] backend {BATCH!r} needs a [batch] section "
                               "(see docs/azure.md)")
        if spec.run.storage not in self.stores:
            raise JobFileError(f"{src}: [run] backend {BATCH!r} needs [run] storage = 'blob': "
                               "Batch nodes read and write the run's files in Blob Storage")
        settings = batch_settings(spec)
        if settings is not None and settings.pieces == "by-reference":
            from shardrun.providers.azure.batch_pieces import why_not_by_reference

            why = why_not_by_reference(settings, spec)
            if why:
                raise JobFileError(f"{src}: [batch] pieces = 'by-reference': {why}")
        if spec.image is not None:
            from shardrun.images.engine import dockerfile

            dockerfile(spec)

    def piece_mode(self, spec: JobSpec, facts: SplitFacts) -> PieceMode:
        """PassesPieces: by reference on Batch when [batch] pieces says so or 'auto' finds it
        cheaper (providers/azure/batch_pieces.py choose_mode)."""
        settings = batch_settings(spec)
        if spec.run.backend != BATCH or settings is None:
            return PieceMode.PER_PIECE
        from shardrun.providers.azure.batch_pieces import choose_mode

        return choose_mode(settings, spec, facts)

    def preflight(self, spec: JobSpec, store: Store) -> None:
        if spec.run.backend != BATCH:
            return
        from shardrun.providers.azure.batch_account import preflight_job

        image, registry = _image_and_registry(spec)
        preflight_job(spec, store, image, registry)

    def open_compute(self, name: str, spec: JobSpec) -> ComputeBackend:
        from shardrun.providers.azure.batch import AzureBatchBackend

        image, registry = _image_and_registry(spec)
        return AzureBatchBackend(spec, image=image, registry=registry)

    def open_store(self, name: str, spec: JobSpec | None, home: Path) -> Store:
        from shardrun.providers.azure.blob import open_blob_store

        if spec is None:
            return open_blob_store(settings=StorageSection())
        return open_blob_store(settings=storage_settings(spec), secrets=spec.secrets,
                               base_dir=spec.base_dir)

    def open_secrets(self, name: str, section: Any, base_dir: Path) -> SecretSource:
        from shardrun.providers.azure.keyvault import KeyVaultSecrets

        return KeyVaultSecrets(vault_url=section.vault_url, names=dict(section.names or {}))

    def cleanup(self, spec: JobSpec, resources: Sequence[tuple[str, str]],
                on_deleted: Callable[[str, str], None]) -> list[str]:
        from shardrun.providers.azure.batch_account import JOB, POOL, delete_run_resources

        if not any(kind in (JOB, POOL) for kind, _ in resources):
            return []
        return delete_run_resources(spec, list(resources), on_deleted)

    def collect_leftovers(self, request: GcRequest) -> list[tuple[Leftover, bool]]:
        from shardrun.providers.azure.gc import collect, collect_batch

        return collect(request) + collect_batch(request)

    def cost(self, spec: JobSpec, attempts: Sequence[Mapping[str, Any]], now: float) -> Cost | None:
        settings = batch_settings(spec)
        if spec.run.backend != BATCH or settings is None:
            return None
        from shardrun.providers.azure.prices import run_cost

        return run_cost(settings, attempts, now or time.time())


def _image_and_registry(spec: JobSpec) -> tuple[str | None, Any]:
    """The image the pool's nodes pull, and the login for its registry (None for localhost)."""
    from shardrun.images.engine import registry_for, registry_host

    image = job_image(spec)
    host = registry_host(image) if image else None
    registry = registry_for(spec, host) if host and host != "localhost" else None
    return image, registry


PROVIDER = AzureProvider()
