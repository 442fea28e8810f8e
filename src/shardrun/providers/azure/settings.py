"""The azure provider's job-file sections: [batch] (Azure Batch, docs/azure.md) and [storage] (Blob
Storage, docs/storage.md). Credentials are named (a secret's name), never written."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shardrun.core.spec import SECRET_NAME_RE, JobSpec, parse_duration

# Batch ids: letters, digits, '-' and '_', at most 64 characters.
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IDENTITY_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                         r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$", re.I)


class BatchSection(BaseModel):
    """Settings of the `azure-batch` backend. Credentials are named (a secret's name), never written."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SECTION: ClassVar[str] = "batch"

    account_url: str = Field(description="https://ACCOUNT.REGION.batch.azure.com, or the emulator's URL.")
    account_name: str | None = Field(None, description="Default: the first label of account_url's host.")
    auth: Literal["default_credential", "shared_key"] = Field(
        "default_credential", description="Microsoft Entra ID (DefaultAzureCredential) or the account key.")
    account_key_secret: str = Field(
        "AZURE_BATCH_KEY", description="For auth = 'shared_key': the secret holding the account key.")
    vm_size: str = "Standard_D2s_v5"
    image_publisher: str = "microsoft-dsvm"
    image_offer: str = "ubuntu-hpc"
    image_sku: str = "2404"
    image_version: str = "latest"
    node_agent_sku: str = "batch.node.ubuntu 24.04"
    dedicated_nodes: int = Field(0, ge=0, le=10000, description="Fixed size: dedicated nodes.")
    spot_nodes: int = Field(0, ge=0, le=10000, description="Fixed size: Spot nodes.")
    autoscale: bool = Field(False, description="Nodes follow the pending tasks, up to max_nodes.")
    max_nodes: int = Field(10, ge=1, le=10000, description="With autoscale: the most nodes at once.")
    autoscale_spot: bool = Field(True, description="With autoscale: scale Spot nodes (else dedicated).")
    autoscale_interval: float = Field(300.0, description="Seconds between evaluations (5m or more on Azure).")
    task_slots_per_node: int = Field(1, ge=1, le=256)
    pool_id: str | None = Field(None, description="Run on this existing pool; shardrun never deletes it.")
    keep_pool: bool = Field(False, description="Keep the run's pool after the run, warm for the next.")
    max_wall_clock: float = Field(
        24 * 3600.0, description="Kill switch: the job ends after this long, even if the client is gone.")
    storage_mode: Literal["files", "mount"] = Field(
        "files", description="'files': resource and output files; 'mount': blobfuse2 in the container.")
    poll_interval: float = Field(5.0, gt=0, description="Seconds between monitoring polls.")
    submit_concurrency: int = Field(8, ge=1, le=64, description="Task collections in flight at once.")
    pieces: Literal["auto", "by-reference", "per-piece"] = Field(
        "auto", description="How tasks get their pieces (docs/azure.md, 'Pieces by reference'): "
        "'by-reference' stores each input once and each task cuts its byte range on the node; "
        "'per-piece' stores every piece; 'auto' picks by reference for the lines, csv and json "
        "splitters unless the input is large against what each node needs.")
    node_identity: str | None = Field(
        None, description="Resource id of a user-assigned managed identity of the pool (pool_id): "
        "nodes read and write Blob Storage as it, with plain URLs instead of SAS URLs.")

    @field_validator("autoscale_interval", "max_wall_clock", "poll_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @field_validator("account_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be a URL like 'https://myaccount.westeurope.batch.azure.com'")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("plain http is allowed only for a loopback emulator")
        return v.rstrip("/")

    @field_validator("pool_id")
    @classmethod
    def _pool_id(cls, v: str | None) -> str | None:
        if v is not None and not BATCH_ID_RE.match(v):
            raise ValueError("must be 1-64 letters, digits, '-' or '_'")
        return v

    @field_validator("node_identity")
    @classmethod
    def _identity(cls, v: str | None) -> str | None:
        if v is not None and not IDENTITY_RE.match(v):
            raise ValueError("must be the resource id of a user-assigned managed identity, "
                             "'/subscriptions/SUB/resourceGroups/RG/providers/"
                             "Microsoft.ManagedIdentity/userAssignedIdentities/NAME'")
        return v

    @model_validator(mode="after")
    def _size(self) -> BatchSection:
        if self.pool_id is None and not self.autoscale and self.dedicated_nodes + self.spot_nodes == 0:
            raise ValueError("say how many nodes: dedicated_nodes and/or spot_nodes, or autoscale = true")
        if self.autoscale_interval < 5 * 60 and "batch.azure.com" in self.account_url:
            raise ValueError("autoscale_interval must be at least 5 minutes on Azure Batch")
        if self.node_identity and self.pool_id is None:
            # The Batch service API cannot give a pool an identity; only Azure Resource Manager can.
            raise ValueError("node_identity needs pool_id: a pool with that identity, created in the "
                             "Azure portal or through Azure Resource Manager (docs/azure.md)")
        if self.node_identity and self.storage_mode == "mount":
            raise ValueError("node_identity works with storage_mode = 'files' only")
        return self

    @property
    def account(self) -> str:
        if self.account_name:
            return self.account_name
        host = urlsplit(self.account_url).hostname or ""
        return host.split(".", 1)[0]


class StorageSection(BaseModel):
    """Settings of the `blob` store. Credentials are named here (a secret's name), never written."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SECTION: ClassVar[str] = "storage"

    account_url: str | None = Field(
        None, description="https://ACCOUNT.blob.core.windows.net, or an Azurite path-style URL."
    )
    account_name: str | None = Field(None, description="Default: taken from account_url.")
    auth: Literal["auto", "connection_string", "key", "sas", "default_credential"] = "auto"
    connection_string_secret: str = "AZURE_STORAGE_CONNECTION_STRING"  # noqa: S105 (a name, not a value)
    account_key_secret: str = "AZURE_STORAGE_KEY"  # noqa: S105 (a name, not a value)
    sas_secret: str = "AZURE_STORAGE_SAS_TOKEN"  # noqa: S105 (a name, not a value)
    max_concurrency: int = Field(16, ge=1, le=256, description="Parallel requests per transfer.")
    block_size_mib: int = Field(8, ge=1, le=4000, description="Block size for large files.")
    retries: int = Field(3, ge=0, le=20, description="Retries per request, with backoff.")
    sas_expiry: float | None = Field(
        None, description="Lifetime of task SAS URLs; default: [run] timeout plus a margin."
    )

    @field_validator("account_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", v):
            raise ValueError("must be an http(s) URL without a query (put a SAS in a secret)")
        return v.rstrip("/")

    @field_validator("connection_string_secret", "account_key_secret", "sas_secret")
    @classmethod
    def _secret_name(cls, v: str) -> str:
        if not SECRET_NAME_RE.match(v):
            raise ValueError("must be the name of a secret (letters, digits, '_', '.', '-')")
        return v

    @field_validator("sas_expiry", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @field_validator("sas_expiry")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("must be positive")
        return v




def batch_settings(spec: JobSpec) -> BatchSection | None:
    """The job's [batch] section, validated; None when it has none."""
    return spec.section("batch", BatchSection)


def storage_settings(spec: JobSpec) -> StorageSection:
    """The job's [storage] section, validated; the defaults when it has none."""
    return spec.section("storage", StorageSection) or StorageSection()


def pool_settings(spec: JobSpec, backend: str | None = None) -> BatchSection | None:
    """The [batch] pool a run of this job uses on `backend` (default: the job's own): None unless
    that backend is Azure Batch. The planner and the report ask this, never the backend's name."""
    if (backend or spec.run.backend) != "azure-batch":
        return None
    return batch_settings(spec)
