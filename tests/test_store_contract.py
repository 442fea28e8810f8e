"""One contract, every store: memory, the local folder, and Azure Blob (against Azurite)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardrun.core.store import Store
from shardrun.providers.local.memory import MemoryStore
from shardrun.providers.local.store import LocalStore

from .fixtures.azurite import Azurite

STORES = ["memory", "local", "blob"]
BLOCK = 256 * 1024  # small blocks for the blob store, so a 1 MiB file goes in several


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "local":
        yield LocalStore(tmp_path / "store")
    else:
        server: Azurite = request.getfixturevalue("azurite")
        from shardrun.providers.azure.blob import open_blob_store

        yield open_blob_store(connection_string=server.connection_string, block_size=BLOCK,
                              max_concurrency=4)


@pytest.fixture
def ns() -> str:
    """A fresh namespace per test (a valid container name), so tests never share data."""
    return f"ct-{uuid.uuid4().hex[:12]}"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_bytes_round_trip(store: Store, ns: str) -> None:
    data = bytes(range(256)) * 4
    store.put_bytes(f"{ns}/config/a.bin", data)
    assert store.get_bytes(f"{ns}/config/a.bin") == data
    assert store.size(f"{ns}/config/a.bin") == len(data)


def test_missing_keys(store: Store, ns: str, tmp_path: Path) -> None:
    store.put_bytes(f"{ns}/x/present", b"1")
    with pytest.raises(FileNotFoundError):
        store.get_bytes(f"{ns}/x/absent")
    with pytest.raises(FileNotFoundError):
        store.get_file(f"{ns}/x/absent", tmp_path / "dest")
    assert store.size(f"{ns}/x/absent") is None
    assert store.size(f"nothing-{ns}/x/absent") is None  # a namespace that does not exist
    assert list(store.list(f"nothing-{ns}/")) == []


def test_file_round_trip_and_replace(store: Store, ns: str, tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", b"first version\n")
    assert store.put_file(f"{ns}/inputs/t1/in.txt", src) == 14
    assert src.exists()  # move=False keeps the source
    _write(src, b"second, longer version\n")
    store.put_file(f"{ns}/inputs/t1/in.txt", src)
    dest = tmp_path / "out" / "copy.txt"
    assert store.get_file(f"{ns}/inputs/t1/in.txt", dest) == 23
    assert dest.read_bytes() == b"second, longer version\n"


def test_move_stores_the_content(store: Store, ns: str, tmp_path: Path) -> None:
    src = _write(tmp_path / "out.txt", b"moved")
    assert store.put_file(f"{ns}/outputs/t1/out.txt", src, move=True) == 5
    assert store.get_bytes(f"{ns}/outputs/t1/out.txt") == b"moved"


def test_empty_and_large_files(store: Store, ns: str, tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty", b"")
    big_data = os.urandom(4 * BLOCK + 12345)  # several blocks plus a short last one
    big = _write(tmp_path / "big", big_data)
    store.put_files([(f"{ns}/files/empty", empty), (f"{ns}/files/big", big)])
    assert store.size(f"{ns}/files/empty") == 0
    assert store.get_bytes(f"{ns}/files/empty") == b""
    dest = tmp_path / "big.copy"
    assert store.get_file(f"{ns}/files/big", dest) == len(big_data)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(big_data).digest()


def test_put_files_and_list_in_key_order(store: Store, ns: str, tmp_path: Path) -> None:
    items = []
    for i in reversed(range(30)):
        items.append((f"{ns}/inputs/task-{i:05d}/piece.txt", _write(tmp_path / f"p{i}", b"x" * i)))
    items.append((f"{ns}/inputs/task-00003/dir/nested.txt", _write(tmp_path / "n", b"nested")))
    store.put_files(items)
    store.put_bytes(f"{ns}/outputs/task-00001/out", b"o")
    listed = list(store.list(f"{ns}/inputs/"))
    assert [o.key for o in listed] == sorted(k for k, _ in items)
    assert {o.key: o.size for o in listed}[f"{ns}/inputs/task-00007/piece.txt"] == 7
    folder = [o.key for o in store.list(f"{ns}/inputs/task-00003/")]
    assert folder == [f"{ns}/inputs/task-00003/dir/nested.txt", f"{ns}/inputs/task-00003/piece.txt"]
    assert [o.key for o in store.list(f"{ns}/outputs/")] == [f"{ns}/outputs/task-00001/out"]


def test_get_files_fetches_each_object(store: Store, ns: str, tmp_path: Path) -> None:
    for i in range(25):
        store.put_bytes(f"{ns}/outputs/task-{i:05d}/out.txt", f"out {i}".encode())
    items = [(f"{ns}/outputs/task-{i:05d}/out.txt", tmp_path / "got" / f"{i}.txt") for i in range(25)]
    store.get_files(items)
    assert [dest.read_text() for _, dest in items] == [f"out {i}" for i in range(25)]
    with pytest.raises(FileNotFoundError):
        store.get_files([(f"{ns}/outputs/missing", tmp_path / "missing")])


def test_delete_namespace_is_exact(store: Store, ns: str) -> None:
    other = f"{ns}-keep"  # a name that merely starts with the first one
    store.put_bytes(f"{ns}/logs/t/1/stdout.txt", b"log")
    store.put_bytes(f"{other}/logs/t/1/stdout.txt", b"kept")
    assert store.delete_namespace(ns) is True
    assert store.size(f"{ns}/logs/t/1/stdout.txt") is None
    assert list(store.list(f"{ns}/")) == []
    assert store.delete_namespace(ns) is False
    assert store.get_bytes(f"{other}/logs/t/1/stdout.txt") == b"kept"
    store.delete_namespace(other)


def test_keys_need_a_namespace(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        store.put_bytes("no-namespace", b"x")


def test_local_path_when_offered_holds_the_object(store: Store, ns: str) -> None:
    store.put_bytes(f"{ns}/config/c.json", b"{}")
    local = store.local_path(f"{ns}/config/c.json")
    if store.name == "local":
        assert local is not None and local.read_bytes() == b"{}"
    else:
        assert local is None  # nothing on this machine: callers must fetch
