"""Moving files to and from Blob Storage: concurrent, in blocks, checked, resumable.

- Many files go through a pool of `max_concurrency` threads; the blocks of large files through a
  second pool of the same size, so at most 2 x max_concurrency requests are in flight.
- Every blob gets the MD5 of its whole content (Content-MD5); every request carries its own MD5
  (validate_content), which the service checks. Downloads are checked against the blob's MD5.
- A blob whose size and MD5 already match the local file is skipped. Blocks have ids derived from
  the file's MD5 and their index, so blocks staged before an interruption are found and not sent
  again; the commit lists each block once, so nothing is duplicated.
- Many files are handed to the pool a few per thread at a time (`in_order`), never all at once: a
  future per file for 100,000 files held about 200 MB of the client's memory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shardrun.core.progress import ProgressView
from shardrun.providers.azure.windowed import in_order

MIB = 1024 * 1024
HASH_CHUNK = 4 * MIB
AHEAD = 4  # items handed to a pool per thread before their results are taken

@dataclass
class TransferStats:
    """What the last transfer did; lets tests and benchmarks check that a resume sent only the rest."""

    files_sent: int = 0
    files_skipped: int = 0
    bytes_sent: int = 0
    blocks_sent: int = 0
    blocks_skipped: int = 0

    def add(self, **counts: int) -> None:
        with _stats_lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


_stats_lock = threading.Lock()


def file_md5(path: Path) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.digest()


def block_ids(md5: bytes, count: int) -> list[str]:
    """Same length for every block (the service requires it), unique per content and index."""
    stem = md5.hex()[:24]
    return [base64.b64encode(f"{stem}-{i:06d}".encode()).decode() for i in range(count)]


class TransferMeter:
    """Adds up the bytes many threads move and reports the running total to a ProgressView, which
    draws it (or not). Thread-safe; `close` sends the last report."""

    def __init__(self, view: ProgressView, label: str, total: int) -> None:
        self.view = view
        self.label = label
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        view.transfer(label, 0, total)

    def advance(self, nbytes: int) -> None:
        with self._lock:  # reports stay in order, so the view never sees the total go back
            self.done += nbytes
            self.view.transfer(self.label, self.done, self.total)

    def close(self) -> None:
        with self._lock:
            self.view.transfer(self.label, self.done, self.total, finished=True)


class Uploader:
    """Uploads files into one container. Build one per batch; it owns its two thread pools."""

    def __init__(self, container: ContainerClient, *, max_concurrency: int, block_size: int,
                 single_put_size: int, stats: TransferStats, progress: TransferMeter) -> None:
        self.container = container
        self.max_concurrency = max_concurrency
        self.block_size = block_size
        self.single_put_size = single_put_size
        self.stats = stats
        self.progress = progress
        self._blocks = ThreadPoolExecutor(max_concurrency, thread_name_prefix="shardrun-block")

    def close(self) -> None:
        self._blocks.shutdown(wait=True, cancel_futures=True)

    def upload_all(self, items: Sequence[tuple[str, Path]], existing: dict[str, tuple[int, bytes]],
                   on_done: Callable[[Path], None] | None = None) -> None:
        """Upload (blob name, file) pairs; `existing` maps blob names to (size, MD5) already stored."""
        if len(items) == 1:  # no pool for a single file: the common case for outputs and logs
            self.upload_one(*items[0], existing)
            if on_done:
                on_done(items[0][1])
            return
        def one(item: tuple[str, Path]) -> Path:
            self.upload_one(item[0], item[1], existing)
            return item[1]

        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="shardrun-put") as pool:
            for path in in_order(pool, one, items, AHEAD * self.max_concurrency):
                if on_done:
                    on_done(path)

    def upload_one(self, name: str, path: Path, existing: dict[str, tuple[int, bytes]]) -> None:
        size = path.stat().st_size
        blob = self.container.get_blob_client(name)
        if size <= self.single_put_size:
            data = path.read_bytes()
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
            if existing.get(name) == (len(data), md5):
                self.stats.add(files_skipped=1)
                self.progress.advance(len(data))
                return
            blob.upload_blob(data, overwrite=True, validate_content=True,
                             content_settings=ContentSettings(content_md5=bytearray(md5)))
            self.stats.add(files_sent=1, bytes_sent=len(data))
            self.progress.advance(len(data))
            return
        md5 = file_md5(path)
        if existing.get(name) == (size, md5):
            self.stats.add(files_skipped=1)
            self.progress.advance(size)
            return
        self._upload_blocks(blob, path, size, md5)
        self.stats.add(files_sent=1)

    def _upload_blocks(self, blob: BlobClient, path: Path, size: int, md5: bytes) -> None:
        count = -(-size // self.block_size)
        ids = block_ids(md5, count)
        staged = _staged_blocks(blob)
        futures: list[Future[None]] = []
        for index, block_id in enumerate(ids):
            offset = index * self.block_size
            length = min(self.block_size, size - offset)
            if staged.get(block_id) == length:
                self.stats.add(blocks_skipped=1)
                self.progress.advance(length)
                continue
            futures.append(self._blocks.submit(self._stage, blob, path, block_id, offset, length))
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        blob.commit_block_list([BlobBlock(block_id=b) for b in ids],
                               content_settings=ContentSettings(content_md5=bytearray(md5)))

    def _stage(self, blob: BlobClient, path: Path, block_id: str, offset: int, length: int) -> None:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        blob.stage_block(block_id, data, length=len(data), validate_content=True)
        self.stats.add(blocks_sent=1, bytes_sent=len(data))
        self.progress.advance(len(data))


def _staged_blocks(blob: BlobClient) -> dict[str, int]:
    """Uncommitted blocks already on the service (from an interrupted upload): id -> size."""
    try:
        _committed, uncommitted = blob.get_block_list("uncommitted")
    except ResourceNotFoundError:
        return {}
    return {b.id: b.size for b in uncommitted}


def existing_blobs(container: ContainerClient, prefix: str) -> dict[str, tuple[int, bytes]]:
    """name -> (size, MD5) of the blobs under `prefix`; blobs without an MD5 are left out."""
    found: dict[str, tuple[int, bytes]] = {}
    for props in container.list_blobs(name_starts_with=prefix or None):
        md5 = props.content_settings.content_md5
        if md5:
            found[props.name] = (props.size, bytes(md5))
    return found


def download(blob: BlobClient, dest: Path, *, max_concurrency: int) -> int:
    """Download to `dest` atomically and check the content against the blob's MD5."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".part-{os.getpid()}-{threading.get_ident()}-{dest.name}")
    try:
        downloader = blob.download_blob(max_concurrency=max_concurrency)
        with open(tmp, "wb") as f:
            size = downloader.readinto(f)
        expected = downloader.properties.content_settings.content_md5
        if expected and file_md5(tmp) != bytes(expected):
            raise IntegrityError(f"{blob.container_name}/{blob.blob_name}: downloaded content does "
                                 "not match the stored MD5")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return int(size)


class IntegrityError(Exception):
    """A transfer's content does not match its checksum."""
