"""The Azure Blob store: one container per run namespace, keys as blob names inside it.

A key `<run>/inputs/task-00001/x.txt` is the blob `inputs/task-00001/x.txt` in the container
`<run>` (run ids are valid container names, see shardrun.core.layout). Every container shardrun creates
carries metadata naming the tool and the run; shardrun writes into, deletes and garbage-collects only
containers whose metadata says they are its own, so a look-alike name is never touched.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shardrun.core.errors import ShardrunError
from shardrun.core.layout import is_run_id, split_key
from shardrun.core.progress import NullProgress, ProgressView
from shardrun.core.store import ObjectInfo
from shardrun.providers.azure.blob_auth import BlobConnection, azure_errors, connect
from shardrun.providers.azure.blob_transfer import (
    AHEAD,
    MIB,
    IntegrityError,
    TransferMeter,
    TransferStats,
    Uploader,
    download,
    existing_blobs,
)
from shardrun.providers.azure.sas import (
    CREATE_WRITE,
    READ,
    DelegationKeys,
    TaskTransfer,
    blob_sas,
    container_sas,
    download_url,
    sas_lifetime,
)
from shardrun.providers.azure.windowed import in_order
from shardrun.version import __version__

META_TOOL = "shardrun_tool"
META_RUN = "shardrun_run"
META_CREATED = "shardrun_created"
META_VERSION = "shardrun_version"
META_STATE = "shardrun_state"  # the run's state, as its client last wrote it
META_HEARTBEAT = "shardrun_heartbeat"  # when its client last said it is alive (unix seconds)
TOOL = "shardrun"


def container_metadata(run_id: str, created: float | None = None) -> dict[str, str]:
    """What marks a run's container as shardrun's. A new container is the run's first heartbeat:
    gc on another machine keeps it even before the run's client writes one."""
    made = str(int(created or time.time()))
    return {META_TOOL: TOOL, META_RUN: run_id, META_CREATED: made, META_VERSION: __version__,
            META_STATE: "splitting", META_HEARTBEAT: made}


def is_ours(metadata: dict[str, str] | None, run_id: str | None = None) -> bool:
    """True when the metadata says shardrun made this container (for `run_id`, if given)."""
    meta = metadata or {}
    return meta.get(META_TOOL) == TOOL and (run_id is None or meta.get(META_RUN) == run_id)


class BlobStore:
    name = "blob"

    def __init__(self, conn: BlobConnection, *, max_concurrency: int = 16, block_size: int = 8 * MIB,
                 single_put_size: int | None = None, sas_expiry: float | None = None) -> None:
        self.conn = conn
        self.max_concurrency = max_concurrency
        self.block_size = block_size
        self.single_put_size = single_put_size if single_put_size is not None else block_size
        self._view: ProgressView = NullProgress()
        self.sas_expiry = sas_expiry
        self.last_stats = TransferStats()
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self._heartbeat_base: dict[str, dict[str, str]] = {}
        self._container_urls: dict[str, str] = {}  # task URLs: the container's URL made once
        self._delegation = DelegationKeys()

    def __repr__(self) -> str:
        return f"BlobStore({self.conn.account_url!r})"

    # -- helpers --------------------------------------------------------------------------------
    def _where(self, namespace: str | None = None) -> str:
        return f"container {namespace!r} at {self.conn.account_url}" if namespace else self.conn.account_url

    def _errors(self, action: str, namespace: str | None = None) -> Any:
        return azure_errors(action, self._where(namespace), self.conn.account_key, self.conn.sas_token)

    def _container(self, namespace: str) -> ContainerClient:
        if not is_run_id(namespace):
            raise ValueError(f"{namespace!r} is not a valid container name")
        return self.conn.service.get_container_client(namespace)

    def _blob_name(self, key: str) -> tuple[str, str]:
        namespace, rest = split_key(key)
        if rest.endswith("/") or "//" in rest:
            raise ValueError(f"key {key!r} is not a blob name")
        return namespace, rest

    def ensure_container(self, namespace: str) -> bool:
        """Create the run's container with its metadata; True if it was created just now.

        An existing container is used only if its metadata names shardrun and this run.
        """
        if namespace in self._ready:
            return False
        container = self._container(namespace)
        with self._errors("create", namespace):
            try:
                container.create_container(metadata=container_metadata(namespace))
                created = True
            except ResourceExistsError:
                meta = container.get_container_properties().metadata
                if not is_ours(meta, namespace):
                    raise ShardrunError(
                        f"container {namespace!r} already exists at {self.conn.account_url} and "
                        "is not shardrun's container for that run; refusing to use it"
                    ) from None
                created = False
        with self._lock:
            self._ready.add(namespace)
        return created

    def report_transfers(self, view: ProgressView) -> None:
        """Report the bytes of long uploads to `view` (core.store.ReportsTransfers)."""
        self._view = view

    # -- Store ----------------------------------------------------------------------------------
    def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        size = Path(src).stat().st_size
        self.put_files([(key, Path(src))], move=move)
        return size

    def put_files(self, items: Sequence[tuple[str, Path]], *, move: bool = False) -> None:
        by_namespace: dict[str, list[tuple[str, Path]]] = {}
        for key, src in items:
            namespace, name = self._blob_name(key)
            by_namespace.setdefault(namespace, []).append((name, Path(src)))
        stats = self.last_stats = TransferStats()
        total = sum(p.stat().st_size for _, p in items)
        view = self._view if total >= MIB else NullProgress()  # a short upload is not worth a bar
        progress = TransferMeter(view, f"upload of {len(items):,} file(s)", total)
        try:
            for namespace, named in by_namespace.items():
                try:
                    self._put_into(namespace, named, stats, progress)
                except ResourceNotFoundError:
                    # The container vanished since we made it (deleted, or an emulator restarted
                    # without it): make it again once, then give up.
                    with self._lock:
                        self._ready.discard(namespace)
                    try:
                        self._put_into(namespace, named, stats, progress)
                    except ResourceNotFoundError:
                        raise ShardrunError(
                            f"upload: {self._where(namespace)} disappeared during the upload") from None
        finally:
            progress.close()
        if move:  # only once every upload is confirmed: a retry above may need any of them again
            for _, src in items:
                Path(src).unlink(missing_ok=True)

    def _put_into(self, namespace: str, named: list[tuple[str, Path]], stats: TransferStats,
                  progress: TransferMeter) -> None:
        fresh = self.ensure_container(namespace)
        container = self._container(namespace)
        uploader = Uploader(container, max_concurrency=self.max_concurrency,
                            block_size=self.block_size, single_put_size=self.single_put_size,
                            stats=stats, progress=progress)
        try:
            with self._errors("upload", namespace):
                # A container made just now is empty: no need to ask what it holds.
                # (A plain string prefix is what the service filters names on.)
                prefix = os.path.commonprefix([n for n, _ in named])  # noqa: RUF071
                existing = {} if fresh else existing_blobs(container, prefix)
                uploader.upload_all(named, existing)
        finally:
            uploader.close()

    def get_files(self, items: Sequence[tuple[str, Path]]) -> None:
        # Small outputs dominate a merge: many files at once, each in one request.
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            for _ in in_order(pool, lambda item: self.get_file(*item), items, AHEAD * self.max_concurrency):
                pass

    def get_file(self, key: str, dest: Path) -> int:
        namespace, name = self._blob_name(key)
        blob = self._container(namespace).get_blob_client(name)
        try:
            with self._errors("download", namespace):
                return download(blob, Path(dest), max_concurrency=self.max_concurrency)
        except ResourceNotFoundError:
            raise FileNotFoundError(key) from None
        except IntegrityError as err:
            raise ShardrunError(f"download: {err}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        namespace, name = self._blob_name(key)
        self.ensure_container(namespace)
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        with self._errors("upload", namespace):
            self._container(namespace).get_blob_client(name).upload_blob(
                data, overwrite=True, validate_content=True,
                content_settings=ContentSettings(content_md5=bytearray(md5)))

    def get_bytes(self, key: str) -> bytes:
        namespace, name = self._blob_name(key)
        try:
            with self._errors("download", namespace):
                return bytes(self._container(namespace).get_blob_client(name).download_blob().readall())
        except ResourceNotFoundError:
            raise FileNotFoundError(key) from None

    def size(self, key: str) -> int | None:
        namespace, name = self._blob_name(key)
        try:
            with self._errors("read", namespace):
                return int(self._container(namespace).get_blob_client(name).get_blob_properties().size)
        except ResourceNotFoundError:
            return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        namespace, _, rest = prefix.partition("/")
        if not is_run_id(namespace):
            return
        found = []
        try:
            with self._errors("list", namespace):
                for props in self._container(namespace).list_blobs(name_starts_with=rest or None):
                    found.append(ObjectInfo(f"{namespace}/{props.name}", int(props.size)))
        except ResourceNotFoundError:
            return
        yield from sorted(found, key=lambda o: o.key)

    def delete_namespace(self, namespace: str) -> bool:
        """Delete the run's container, only if its metadata says it is shardrun's for that run."""
        container = self._container(namespace)
        try:
            with self._errors("delete", namespace):
                meta = container.get_container_properties().metadata
                if not is_ours(meta, namespace):
                    raise ShardrunError(
                        f"container {namespace!r} at {self.conn.account_url} is not shardrun's "
                        "container for that run; left alone"
                    )
                container.delete_container()
        except ResourceNotFoundError:
            return False
        with self._lock:
            self._ready.discard(namespace)
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    # -- SAS for tasks (shardrun.providers.azure.sas.SasIssuer) -----------------------------------------
    def sas_lifetime(self, timeout: float | None) -> float:
        return sas_lifetime(timeout, self.sas_expiry)

    def read_url(self, key: str, lifetime: float) -> str:
        return self._url(key, READ, lifetime)

    def write_url(self, key: str, lifetime: float) -> str:
        return self._url(key, CREATE_WRITE, lifetime)

    def container_write_url(self, namespace: str, lifetime: float) -> str:
        """Create/write-only URL of a run's container (Azure Batch output files)."""
        url = self._container(namespace).url.split("?")[0]
        conn = self.conn
        if conn.account_key is not None:
            token = container_sas(account_name=conn.account_name, container=namespace,
                                  lifetime=lifetime, account_key=conn.account_key.reveal())
        elif conn.auth == "default_credential":
            token = container_sas(account_name=conn.account_name, container=namespace,
                                  lifetime=lifetime, user_delegation_key=self._delegation_key(lifetime))
        elif conn.sas_token is not None:
            token = conn.sas_token.reveal().lstrip("?")
        else:
            raise ShardrunError("cannot make task SAS URLs without an account key or an Azure login")
        return f"{url}?{token}"

    def task_transfer(self, *, input_key: str, output_key: str, log_keys: dict[str, str],
                      lifetime: float) -> TaskTransfer:
        if input_key.endswith("/"):
            inputs = tuple((o.key[len(input_key):], self.read_url(o.key, lifetime))
                           for o in self.list(input_key))
            name = input_key.rstrip("/").rsplit("/", 1)[-1]
        else:
            inputs = ((input_key.rsplit("/", 1)[-1], self.read_url(input_key, lifetime)),)
            name = inputs[0][0]
        return TaskTransfer(
            input_name=name, input_urls=inputs, input_is_folder=input_key.endswith("/"),
            output_url=self.write_url(output_key, lifetime),
            log_urls={stream: self.write_url(k, lifetime) for stream, k in log_keys.items()},
            client_options=self.task_client_options(),
        )

    def task_access(self, *, input_key: str, output_key: str, log_keys: dict[str, str],
                    timeout: float | None) -> TaskTransfer:
        return self.task_transfer(input_key=input_key, output_key=output_key, log_keys=log_keys,
                                  lifetime=self.sas_lifetime(timeout))

    def fetch_shared(self, key: str, dest: Path, timeout: float | None) -> None:
        download_url(self.read_url(key, self.sas_lifetime(timeout)), dest, self.task_client_options())

    def task_client_options(self) -> dict[str, Any]:
        """Retry and timeout settings for clients built from SAS URLs; no credential in them."""
        opts = self.conn.client_options
        return {k: opts[k] for k in ("retry_policy", "connection_timeout", "read_timeout",
                                     "transport") if k in opts}

    def _url(self, key: str, permission: str, lifetime: float) -> str:
        namespace, name = self._blob_name(key)
        base = self._container_urls.get(namespace)
        if base is None:
            base = self._container_urls[namespace] = self._container(namespace).url.split("?")[0]
        blob_url = f"{base}/{quote(name, safe='~/')}"  # as the SDK's BlobClient.url quotes it
        conn = self.conn
        if conn.account_key is not None:
            token = blob_sas(account_name=conn.account_name, container=namespace, blob=name,
                             permission=permission, lifetime=lifetime,
                             account_key=conn.account_key.reveal())
        elif conn.auth == "default_credential":
            token = blob_sas(account_name=conn.account_name, container=namespace, blob=name,
                             permission=permission, lifetime=lifetime,
                             user_delegation_key=self._delegation_key(lifetime))
        elif conn.sas_token is not None:
            # A SAS cannot mint a narrower one: the task gets the SAS it was given (see docs).
            token = conn.sas_token.reveal().lstrip("?")
        else:
            raise ShardrunError("cannot make task SAS URLs without an account key or an Azure login")
        return f"{blob_url}?{token}"

    def _delegation_key(self, lifetime: float) -> Any:
        def fetch(start: dt.datetime, expiry: dt.datetime) -> Any:
            with self._errors("get a user delegation key"):
                return self.conn.service.get_user_delegation_key(start, expiry)

        return self._delegation.get(lifetime, fetch)

    # -- listing for gc -------------------------------------------------------------------------
    def heartbeat(self, namespace: str, state: str) -> None:
        """Write the run's state and the time into its container's metadata, where `shardrun gc`
        on any machine sees it. One request; the container must exist."""
        container = self._container(namespace)
        with self._errors("heartbeat", namespace):
            if namespace not in self._heartbeat_base:
                base = dict(container.get_container_properties().metadata or {})
                if not is_ours(base, namespace):
                    return  # never write into a container that is not this run's
                self._heartbeat_base[namespace] = {k: v for k, v in base.items()
                                                   if k not in (META_STATE, META_HEARTBEAT)}
            container.set_container_metadata({**self._heartbeat_base[namespace], META_STATE: state,
                                              META_HEARTBEAT: str(int(time.time()))})

    def shardrun_containers(self) -> builtins.list[tuple[str, dict[str, str], float]]:
        """(name, metadata, created) of every container whose metadata says shardrun made it."""
        out = []
        with self._errors("list containers"):
            for c in self.conn.service.list_containers(include_metadata=True):
                meta = dict(c.metadata or {})
                if is_ours(meta):
                    try:
                        created = float(meta.get(META_CREATED, ""))
                    except ValueError:
                        created = c.last_modified.timestamp()
                    out.append((c.name, meta, created))
        return out


def open_blob_store(
    *,
    settings: Any = None,
    secrets: Any = None,
    base_dir: Path | None = None,
    **direct: Any,
) -> BlobStore:
    """Open the blob store from a job's [storage]/[secrets] sections, or from direct arguments
    (connection_string=..., account_url=..., account_key=..., sas_token=..., credential=...)."""
    tuning = {k: direct.pop(k) for k in ("max_concurrency", "block_size", "single_put_size",
                                         "sas_expiry") if k in direct}
    if settings is not None:
        tuning.setdefault("max_concurrency", settings.max_concurrency)
        tuning.setdefault("block_size", settings.block_size_mib * MIB)
        tuning.setdefault("sas_expiry", settings.sas_expiry)
        direct.setdefault("retries", settings.retries)
    direct.setdefault("max_concurrency", tuning.get("max_concurrency", 16))
    conn = connect(settings=settings, secrets=secrets, base_dir=base_dir, **direct)
    return BlobStore(conn, **tuning)
