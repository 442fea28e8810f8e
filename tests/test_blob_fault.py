"""Azurite is killed in the middle of a large upload, restarted on the same port and folder, and the
upload resumes: identical checksums, only the missing part sent again, nothing duplicated."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from shardrun.core.errors import ShardrunError
from shardrun.providers.azure import blob_transfer
from shardrun.providers.azure.blob import BlobStore, open_blob_store
from shardrun.providers.azure.blob_transfer import MIB, block_ids, file_md5

from .fixtures.azurite import Azurite

BLOCK = 1 * MIB
BIG_BLOCKS = 40
PAUSE_AFTER = 12  # blocks that reach Azurite before it is killed
WAIT = 30.0       # seconds: bound on every wait below

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Azurite]:
    """Its own Azurite: this test kills it."""
    s = Azurite(tmp_path / "azurite-data")
    s.start()
    yield s
    s.stop()


def _db_saved(server: Azurite) -> None:
    """Azurite writes its metadata to disk every 5 s, and only when something changed since its last
    save; wait for a save of everything done so far.

    A save that fell between the last change and this call would leave nothing to save later: so a
    change is made here, after `moment` (a container of its own), and the next save, which must
    come, holds it and everything before it. The 50 ms keep the file's coarse timestamp clear of
    `moment`."""
    moment = time.time()
    time.sleep(0.05)
    BlobServiceClient.from_connection_string(server.connection_string).create_container(
        f"fault-marker-{uuid.uuid4().hex[:12]}")
    db = server.location / "__azurite_db_blob__.json"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if db.exists() and db.stat().st_mtime > moment:
            return
        time.sleep(0.2)
    raise AssertionError("azurite did not save its metadata")


def test_kill_azurite_mid_upload_then_resume(server: Azurite, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    small = []
    for i in range(50):
        p = tmp_path / "small" / f"s{i:02d}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(os.urandom(4096))
        small.append((f"fault-run/inputs/task-{i:05d}/s.txt", p))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG_BLOCKS * BLOCK - 777))
    big_md5 = file_md5(big)
    items = [*small, ("fault-run/files/big.bin", big)]

    def new_store() -> BlobStore:
        return open_blob_store(connection_string=server.connection_string, block_size=BLOCK,
                               max_concurrency=4, retries=1)

    # First the small files, and let Azurite save them, as it would during any long upload.
    store = new_store()
    store.put_files(small)
    _db_saved(server)

    # Then the big one: after PAUSE_AFTER blocks, hold the rest until Azurite has saved and died.
    hold = threading.Event()
    sent = threading.Semaphore(0)
    real_stage = blob_transfer.Uploader._stage

    def stage(self: blob_transfer.Uploader, *args: object) -> None:
        if not hold.is_set() and self.stats.blocks_sent >= PAUSE_AFTER:
            hold.wait(WAIT)
        real_stage(self, *args)  # type: ignore[arg-type]
        sent.release()

    monkeypatch.setattr(blob_transfer.Uploader, "_stage", stage)
    failure: list[BaseException] = []

    def upload() -> None:
        try:
            store.put_files(items)
        except BaseException as err:
            failure.append(err)

    worker = threading.Thread(target=upload)
    worker.start()
    for _ in range(PAUSE_AFTER):
        assert sent.acquire(timeout=WAIT)
    _db_saved(server)
    server.kill()
    hold.set()  # the held blocks now meet a dead endpoint
    worker.join(WAIT * 2)
    assert not worker.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], ShardrunError), failure
    assert "cannot reach" in str(failure[0])
    monkeypatch.setattr(blob_transfer.Uploader, "_stage", real_stage)

    server.start()  # same port, same folder
    store = new_store()  # a new client, as after a restart of shardrun itself
    store.put_files(items)
    stats = store.last_stats
    assert stats.files_skipped == len(small)  # saved before the crash: not sent again
    assert stats.blocks_skipped >= PAUSE_AFTER  # staged before the crash: not sent again
    assert stats.blocks_skipped + stats.blocks_sent == BIG_BLOCKS
    assert stats.bytes_sent <= big.stat().st_size - PAUSE_AFTER * BLOCK

    raw = BlobServiceClient.from_connection_string(server.connection_string).get_container_client(
        "fault-run")
    names = sorted(b.name for b in raw.list_blobs())
    assert names == sorted(k.split("/", 1)[1] for k, _ in items)  # nothing extra, nothing twice
    committed, uncommitted = raw.get_blob_client("files/big.bin").get_block_list("all")
    assert [b.id for b in committed] == block_ids(big_md5, BIG_BLOCKS) and uncommitted == []
    downloaded = tmp_path / "big.copy"
    store.get_file("fault-run/files/big.bin", downloaded)
    assert hashlib.md5(downloaded.read_bytes()).digest() == big_md5
    for key, path in small[:5]:
        assert store.get_bytes(key) == path.read_bytes()


def test_pieces_leave_staging_only_once_every_upload_is_confirmed(
        azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container vanishes after the first upload round (as when Azurite restarts and loses
    its last writes): the round is made again from the staged files, which are still there."""
    from azure.core.exceptions import ResourceNotFoundError

    from shardrun.providers.azure import blob as blob_module
    from shardrun.providers.azure.blob import open_blob_store

    store = open_blob_store(connection_string=azurite.connection_string)
    ns = f"staged-{uuid.uuid4().hex[:10]}"
    files = []
    for i in range(3):
        f = tmp_path / f"piece-{i}.txt"
        f.write_text(f"piece {i}\n")
        files.append((f"{ns}/inputs/task-{i}/piece.txt", f))
    real = blob_module.Uploader.upload_all
    rounds = []

    def lose_the_first_round(self: object, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        rounds.append(1)
        if len(rounds) == 1:
            store.conn.service.delete_container(ns)
            raise ResourceNotFoundError("the container is gone")

    monkeypatch.setattr(blob_module.Uploader, "upload_all", lose_the_first_round)
    store.put_files(files, move=True)
    assert len(rounds) == 2
    assert [store.get_bytes(k) for k, _ in files] == [f"piece {i}\n".encode() for i in range(3)]
    assert not any(f.exists() for _, f in files)  # moved: gone from staging, but only at the end
