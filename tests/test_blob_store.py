"""What the blob store does beyond the common contract: metadata, resume, integrity, SAS."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from shardrun.core.errors import ShardrunError
from shardrun.providers.azure.blob import META_RUN, META_TOOL, BlobStore, open_blob_store
from shardrun.providers.azure.blob_transfer import block_ids, file_md5
from shardrun.providers.azure.sas import CREATE_WRITE, READ, TaskTransfer, blob_sas, sas_lifetime

from .fixtures.azurite import ACCOUNT, DEV_KEY, Azurite

BLOCK = 256 * 1024


@pytest.fixture
def store(azurite: Azurite) -> BlobStore:
    return open_blob_store(connection_string=azurite.connection_string, block_size=BLOCK,
                           max_concurrency=4)


@pytest.fixture
def raw(azurite: Azurite) -> BlobServiceClient:
    """The SDK without shardrun, to look at what the store did."""
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def ns() -> str:
    return f"bs-{uuid.uuid4().hex[:12]}"


def _files(folder: Path, count: int, size: int = 100) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"f{i:03d}.bin"
        path.write_bytes(os.urandom(size))
        out.append(path)
    return out


def test_container_metadata_names_run_and_tool(store: BlobStore, raw: BlobServiceClient, ns: str) -> None:
    store.put_bytes(f"{ns}/config/c", b"x")
    meta = raw.get_container_client(ns).get_container_properties().metadata
    assert meta[META_TOOL] == "shardrun"
    assert meta[META_RUN] == ns


def test_foreign_container_is_never_used_or_deleted(store: BlobStore, raw: BlobServiceClient,
                                                    ns: str) -> None:
    raw.create_container(ns)  # same name, no shardrun metadata: someone else's
    raw.get_container_client(ns).upload_blob("theirs.txt", b"theirs")
    with pytest.raises(ShardrunError, match="not shardrun's") as info:
        store.put_bytes(f"{ns}/inputs/t/x", b"mine")
    assert "\n" not in str(info.value)
    with pytest.raises(ShardrunError, match="left alone"):
        store.delete_namespace(ns)
    names = [b.name for b in raw.get_container_client(ns).list_blobs()]
    assert names == ["theirs.txt"]


def test_unchanged_files_are_skipped(store: BlobStore, ns: str, tmp_path: Path) -> None:
    files = _files(tmp_path / "in", 20)
    items = [(f"{ns}/inputs/{p.name}", p) for p in files]
    store.put_files(items)
    assert (store.last_stats.files_sent, store.last_stats.files_skipped) == (20, 0)
    store.put_files(items)
    assert (store.last_stats.files_sent, store.last_stats.files_skipped) == (20 - 20, 20)
    assert store.last_stats.bytes_sent == 0
    files[3].write_bytes(b"changed")
    store.put_files(items)
    assert (store.last_stats.files_sent, store.last_stats.files_skipped) == (1, 19)
    assert store.get_bytes(f"{ns}/inputs/{files[3].name}") == b"changed"


def test_staged_blocks_are_not_sent_again(store: BlobStore, raw: BlobServiceClient, ns: str,
                                          tmp_path: Path) -> None:
    """An upload cut short left two blocks on the service; the next one sends only the rest."""
    data = os.urandom(5 * BLOCK + 1000)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store.put_bytes(f"{ns}/config/c", b"makes the container")
    ids = block_ids(file_md5(src), 6)
    blob = raw.get_blob_client(ns, "inputs/big.bin")
    for i in (0, 1):
        blob.stage_block(ids[i], data[i * BLOCK:(i + 1) * BLOCK])
    store.put_file(f"{ns}/inputs/big.bin", src)
    assert store.last_stats.blocks_skipped == 2
    assert store.last_stats.blocks_sent == 4
    assert store.last_stats.bytes_sent == len(data) - 2 * BLOCK
    committed, uncommitted = blob.get_block_list("all")
    assert [b.id for b in committed] == ids and uncommitted == []
    assert raw.get_blob_client(ns, "inputs/big.bin").download_blob().readall() == data


def test_download_checks_the_stored_md5(store: BlobStore, raw: BlobServiceClient, ns: str,
                                        tmp_path: Path) -> None:
    store.put_bytes(f"{ns}/config/c", b"makes the container")
    wrong = hashlib.md5(b"something else").digest()
    blob = raw.get_blob_client(ns, "outputs/t/out")
    blob.upload_blob(b"the real content")
    # The service checks the MD5 on upload, so corrupt the stored checksum afterwards.
    blob.set_http_headers(ContentSettings(content_md5=bytearray(wrong)))
    with pytest.raises(ShardrunError, match="does not match the stored MD5"):
        store.get_file(f"{ns}/outputs/t/out", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_task_sas_urls_are_least_privilege(store: BlobStore, ns: str, tmp_path: Path) -> None:
    store.put_bytes(f"{ns}/inputs/t1/in.txt", b"input")
    read = BlobClient.from_blob_url(store.read_url(f"{ns}/inputs/t1/in.txt", 600))
    assert read.download_blob().readall() == b"input"
    with pytest.raises(HttpResponseError) as denied:
        read.upload_blob(b"overwrite", overwrite=True)
    assert denied.value.status_code == 403

    write = BlobClient.from_blob_url(store.write_url(f"{ns}/outputs/t1/out.txt", 600))
    write.upload_blob(b"output", overwrite=True)
    assert store.get_bytes(f"{ns}/outputs/t1/out.txt") == b"output"
    with pytest.raises(HttpResponseError) as denied:
        write.download_blob().readall()
    assert denied.value.status_code == 403
    # A URL is for one blob only: it does not open a neighbour.
    neighbour = store.write_url(f"{ns}/outputs/t1/out.txt", 600).replace("out.txt", "other.txt")
    with pytest.raises(HttpResponseError):
        BlobClient.from_blob_url(neighbour).upload_blob(b"x", overwrite=True)


def test_expired_sas_is_refused(azurite: Azurite, store: BlobStore, ns: str) -> None:
    import datetime as dt

    store.put_bytes(f"{ns}/inputs/t1/in.txt", b"input")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = blob_sas(account_name=ACCOUNT, container=ns, blob="inputs/t1/in.txt", permission=READ,
                     lifetime=600, account_key=DEV_KEY, now=long_ago)
    url = f"{azurite.account_url}/{ns}/inputs/t1/in.txt?{token}"
    with pytest.raises(HttpResponseError) as denied:
        BlobClient.from_blob_url(url).download_blob().readall()
    assert denied.value.status_code == 403


def test_sas_lifetime_follows_the_time_limit() -> None:
    assert sas_lifetime(3600.0) == 3600.0 + 900.0  # the attempt's limit plus room to move files
    assert sas_lifetime(8 * 3600.0) == 8 * 3600.0 * 1.25
    assert sas_lifetime(None) == 24 * 3600.0
    assert sas_lifetime(60.0, override=120.0) == 120.0
    with pytest.raises(ValueError):
        blob_sas(account_name=ACCOUNT, container="c", blob="b", permission="racwdl", lifetime=1,
                 account_key=DEV_KEY)
    assert CREATE_WRITE == "cw"


def test_task_transfer_moves_files_through_urls_only(store: BlobStore, ns: str, tmp_path: Path) -> None:
    store.put_bytes(f"{ns}/inputs/t1/piece/a.txt", b"A")
    store.put_bytes(f"{ns}/inputs/t1/piece/sub/b.txt", b"B")
    transfer = store.task_transfer(
        input_key=f"{ns}/inputs/t1/piece/", output_key=f"{ns}/outputs/t1/out.txt",
        log_keys={"stdout": f"{ns}/logs/t1/1/stdout.txt"}, lifetime=600)
    assert isinstance(transfer, TaskTransfer)
    assert "sig=" not in repr(transfer)
    folder = transfer.fetch_input(tmp_path / "wd")
    assert (folder / "a.txt").read_bytes() == b"A"
    assert (folder / "sub" / "b.txt").read_bytes() == b"B"
    out = tmp_path / "out.txt"
    out.write_bytes(b"result")
    assert transfer.put_output(out) == 6
    transfer.put_log("stdout", out)
    assert store.get_bytes(f"{ns}/outputs/t1/out.txt") == b"result"
    assert store.get_bytes(f"{ns}/logs/t1/1/stdout.txt") == b"result"


def test_task_urls_name_the_blob_as_the_sdk_does(store: BlobStore, ns: str) -> None:
    """read_url builds the blob's URL from the container's (no client object per task): the same
    URL the SDK's BlobClient gives, for names that need quoting, and it opens the blob."""
    names = ["inputs/t 1/piece #1?.txt", "inputs/t2/100%~é+&=.txt", "logs/t3/a;b,c@d.txt"]
    for name in names:
        store.put_bytes(f"{ns}/{name}", name.encode())
        url = store.read_url(f"{ns}/{name}", 600)
        expected = store.conn.service.get_container_client(ns).get_blob_client(name).url
        assert url.split("?")[0] == expected.split("?")[0]
        assert BlobClient.from_blob_url(url).download_blob().readall() == name.encode()


def test_in_order_keeps_few_items_in_flight_and_stops_on_an_error() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from shardrun.providers.azure.windowed import in_order

    taken = 0
    high = 0
    done: list[int] = []

    def items() -> Iterator[int]:
        nonlocal taken, high
        for i in range(1000):
            taken += 1
            high = max(high, taken - len(done))
            yield i

    def work(i: int) -> int:
        if i == 500:
            raise ValueError("boom")
        return i * 2

    with ThreadPoolExecutor(4) as pool, pytest.raises(ValueError, match="boom"):
        for r in in_order(pool, work, items(), 8):
            done.append(r)
    assert done == [2 * i for i in range(500)]  # in order, up to the error
    assert high <= 9 and taken < 520  # a window of 8, not every item at once


class _DelegatingService(BlobServiceClient):
    """A BlobServiceClient whose user delegation key comes without OAuth (Azurite has none over
    plain HTTP): counts how often one is asked for."""

    asked = 0

    def get_user_delegation_key(self, key_start_time: Any, key_expiry_time: Any, **_: Any) -> Any:
        from azure.storage.blob import UserDelegationKey

        type(self).asked += 1
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid, key.signed_service, key.signed_version = "o", "t", "b", "2025-11-05"
        key.signed_start = key_start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = key_expiry_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.value = DEV_KEY
        return key


def test_task_urls_under_an_azure_login_share_one_user_delegation_key() -> None:
    """With auth = default_credential each task URL is signed with a user delegation key: one key
    for the run's URLs while it lasts, not a request to the service per URL."""
    from shardrun.providers.azure.blob_auth import BlobConnection

    url = f"http://127.0.0.1:1/{ACCOUNT}"
    conn = BlobConnection(service=_DelegatingService(url), account_url=url, account_name=ACCOUNT,
                          auth="default_credential")
    store = BlobStore(conn)
    urls = [store.read_url(f"run-1/inputs/t{i}/in.txt", 3600) for i in range(50)]
    assert _DelegatingService.asked == 1
    assert all("skoid=o" in u and "sp=r" in u for u in urls)
    store.read_url("run-1/inputs/t0/in.txt", 3 * 3600)  # longer than the key lasts: a new one
    assert _DelegatingService.asked == 2
