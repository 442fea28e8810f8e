"""SAS helpers: least-privilege URLs for tasks, and the task side that uses only those URLs.

A task gets read-only URLs for its input, the config and the shared files, and create/write-only
URLs for its output and its logs, each for one blob. They expire with the job's time limit. This is
what an Azure Batch node gets (resource files and output files); the local backend uses the same
`TaskTransfer`, so a job that works locally against Blob works the same way on Batch.

No azure import at module level: the local backend imports this module whatever store it uses.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

READ = "r"
CREATE_WRITE = "cw"
DEFAULT_LIFETIME = 24 * 3600.0  # seconds, when the job sets no time limit
CLOCK_SKEW = dt.timedelta(minutes=5)


def sas_lifetime(timeout: float | None, override: float | None = None) -> float:
    """How long a task's URLs live: the attempt's time limit plus room to move its files."""
    if override is not None:
        return override
    if timeout is None:
        return DEFAULT_LIFETIME
    return timeout + max(15 * 60.0, 0.25 * timeout)


def blob_sas(
    *,
    account_name: str,
    container: str,
    blob: str,
    permission: str,
    lifetime: float,
    account_key: str | None = None,
    user_delegation_key: Any = None,
    now: dt.datetime | None = None,
) -> str:
    """A service SAS token for one blob. `permission` is READ or CREATE_WRITE, nothing broader."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    if permission == READ:
        perms = BlobSasPermissions(read=True)
    elif permission == CREATE_WRITE:
        perms = BlobSasPermissions(create=True, write=True)
    else:
        raise ValueError(f"task SAS permission must be {READ!r} or {CREATE_WRITE!r}")
    now = now or dt.datetime.now(dt.UTC)
    return generate_blob_sas(
        account_name, container, blob, account_key=account_key,
        user_delegation_key=user_delegation_key, permission=perms,
        start=now - CLOCK_SKEW, expiry=now + dt.timedelta(seconds=lifetime),
    )


def container_sas(
    *,
    account_name: str,
    container: str,
    lifetime: float,
    account_key: str | None = None,
    user_delegation_key: Any = None,
    now: dt.datetime | None = None,
) -> str:
    """A create/write-only service SAS for one run's container: Azure Batch output files need a
    container URL, and the run's container holds nothing of any other run."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = now or dt.datetime.now(dt.UTC)
    return generate_container_sas(
        account_name, container, account_key=account_key, user_delegation_key=user_delegation_key,
        permission=ContainerSasPermissions(create=True, write=True),
        start=now - CLOCK_SKEW, expiry=now + dt.timedelta(seconds=lifetime),
    )


class DelegationKeys:
    """The user delegation key task URLs are signed with (auth = default_credential): one for as
    long as it lasts, not a request to the service per URL. A new one lasts an hour longer than
    asked (at most the 7 days the service allows), so the next URLs can use it too."""

    def __init__(self) -> None:
        self._held: tuple[dt.datetime, Any] | None = None
        self._lock = threading.Lock()

    def get(self, lifetime: float, fetch: Callable[[dt.datetime, dt.datetime], Any]) -> Any:
        """A key valid for `lifetime` seconds from now; `fetch(start, expiry)` asks for a new one."""
        now = dt.datetime.now(dt.UTC)
        needed = now + dt.timedelta(seconds=lifetime)
        with self._lock:
            held = self._held
        if held is not None and held[0] >= needed:
            return held[1]
        expiry = min(needed + dt.timedelta(hours=1), now + dt.timedelta(days=7))
        key = fetch(now - CLOCK_SKEW, expiry)
        with self._lock:
            self._held = (expiry, key)
        return key


@dataclass(frozen=True, repr=False)
class TaskTransfer:
    """One task attempt's storage access, through SAS URLs only. repr never shows a URL."""

    input_name: str
    input_urls: tuple[tuple[str, str], ...]  # (path inside the input, read-only URL)
    input_is_folder: bool
    output_url: str                          # create/write-only
    log_urls: dict[str, str]                 # stream -> create/write-only URL
    client_options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"TaskTransfer({self.input_name!r}, {len(self.input_urls)} input blob(s))"

    def fetch_input(self, folder: Path) -> Path:
        """Download the input into `folder`; return the path the app gets as INPUT_PATH."""
        if not self.input_is_folder:
            dest = folder / self.input_name
            download_url(self.input_urls[0][1], dest, self.client_options)
            return dest
        base = folder / self.input_name
        base.mkdir(parents=True, exist_ok=True)
        for rel, url in self.input_urls:
            download_url(url, base / rel, self.client_options)
        return base

    def put_output(self, path: Path) -> int:
        return upload_url(self.output_url, path, self.client_options)

    def put_log(self, stream: str, path: Path) -> None:
        upload_url(self.log_urls[stream], path, self.client_options)


@runtime_checkable
class SasIssuer(Protocol):
    """A store that can hand tasks SAS URLs instead of its own credential (the blob store)."""

    def read_url(self, key: str, lifetime: float) -> str: ...

    def task_transfer(self, *, input_key: str, output_key: str, log_keys: dict[str, str],
                      lifetime: float) -> TaskTransfer: ...

    def sas_lifetime(self, timeout: float | None) -> float: ...

    def task_client_options(self) -> dict[str, Any]: ...


def download_url(url: str, dest: Path, options: dict[str, Any]) -> int:
    from azure.storage.blob import BlobClient

    from shardrun.providers.azure.blob_auth import azure_errors
    from shardrun.providers.azure.blob_transfer import download

    blob = BlobClient.from_blob_url(url, **options)
    with azure_errors("task download", f"blob {blob.blob_name}"):
        return download(blob, dest, max_concurrency=4)


def upload_url(url: str, path: Path, options: dict[str, Any]) -> int:
    from azure.storage.blob import BlobClient, ContentSettings

    from shardrun.providers.azure.blob_auth import azure_errors
    from shardrun.providers.azure.blob_transfer import file_md5

    blob = BlobClient.from_blob_url(url, **options)
    md5 = file_md5(path)
    size = path.stat().st_size
    with azure_errors("task upload", f"blob {blob.blob_name}"), open(path, "rb") as f:
        blob.upload_blob(f, length=size, overwrite=True, validate_content=True, max_concurrency=4,
                         content_settings=ContentSettings(content_md5=bytearray(md5)))
    return size
