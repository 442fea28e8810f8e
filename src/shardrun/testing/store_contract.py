"""The store contract: what every storage backend must do, as a pytest suite to subclass.

Every store must pass it (memory, the local folder, Blob Storage, a third party's)::

    from shardrun.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path: Path) -> Store:
            return MyStore(tmp_path)

A store that hands out local files declares `offers_local_paths = True`; the suite then checks the
file, and otherwise checks that none is offered. A store that moves data in blocks should be opened
with `block_size` so the large-file test spans several blocks.

pytest is imported here only: this package is for test suites, and shardrun never imports it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import ClassVar

import pytest

from shardrun.core.store import Store


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class StoreContract:
    """The suite. Override `store`."""

    offers_local_paths: ClassVar[bool] = False
    """local_path() gives a file on this machine holding the object (the local folder store)."""
    block_size: ClassVar[int] = 256 * 1024
    """Open a block-based store with this block size: the large file then spans several blocks."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError(f"{type(self).__name__} must override the `store` fixture")

    @pytest.fixture
    def ns(self) -> str:
        """A fresh namespace per test (a valid container name), so tests never share data."""
        return f"ct-{uuid.uuid4().hex[:12]}"

    def test_bytes_round_trip(self, store: Store, ns: str) -> None:
        data = bytes(range(256)) * 4
        store.put_bytes(f"{ns}/config/a.bin", data)
        assert store.get_bytes(f"{ns}/config/a.bin") == data
        assert store.size(f"{ns}/config/a.bin") == len(data)

    def test_missing_keys(self, store: Store, ns: str, tmp_path: Path) -> None:
        store.put_bytes(f"{ns}/x/present", b"1")
        with pytest.raises(FileNotFoundError):
            store.get_bytes(f"{ns}/x/absent")
        with pytest.raises(FileNotFoundError):
            store.get_file(f"{ns}/x/absent", tmp_path / "dest")
        assert store.size(f"{ns}/x/absent") is None
        assert store.size(f"nothing-{ns}/x/absent") is None  # a namespace that does not exist
        assert list(store.list(f"nothing-{ns}/")) == []

    def test_file_round_trip_and_replace(self, store: Store, ns: str, tmp_path: Path) -> None:
        src = _write(tmp_path / "in.txt", b"first version\n")
        assert store.put_file(f"{ns}/inputs/t1/in.txt", src) == 14
        assert src.exists()  # move=False keeps the source
        _write(src, b"second, longer version\n")
        store.put_file(f"{ns}/inputs/t1/in.txt", src)
        dest = tmp_path / "out" / "copy.txt"
        assert store.get_file(f"{ns}/inputs/t1/in.txt", dest) == 23
        assert dest.read_bytes() == b"second, longer version\n"

    def test_move_stores_the_content(self, store: Store, ns: str, tmp_path: Path) -> None:
        src = _write(tmp_path / "out.txt", b"moved")
        assert store.put_file(f"{ns}/outputs/t1/out.txt", src, move=True) == 5
        assert store.get_bytes(f"{ns}/outputs/t1/out.txt") == b"moved"

    def test_empty_and_large_files(self, store: Store, ns: str, tmp_path: Path) -> None:
        empty = _write(tmp_path / "empty", b"")
        big_data = os.urandom(4 * self.block_size + 12345)  # several blocks plus a short last one
        big = _write(tmp_path / "big", big_data)
        store.put_files([(f"{ns}/files/empty", empty), (f"{ns}/files/big", big)])
        assert store.size(f"{ns}/files/empty") == 0
        assert store.get_bytes(f"{ns}/files/empty") == b""
        dest = tmp_path / "big.copy"
        assert store.get_file(f"{ns}/files/big", dest) == len(big_data)
        assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(big_data).digest()

    def test_put_files_and_list_in_key_order(self, store: Store, ns: str, tmp_path: Path) -> None:
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

    def test_get_files_fetches_each_object(self, store: Store, ns: str, tmp_path: Path) -> None:
        for i in range(25):
            store.put_bytes(f"{ns}/outputs/task-{i:05d}/out.txt", f"out {i}".encode())
        items = [(f"{ns}/outputs/task-{i:05d}/out.txt", tmp_path / "got" / f"{i}.txt") for i in range(25)]
        store.get_files(items)
        assert [dest.read_text() for _, dest in items] == [f"out {i}" for i in range(25)]
        with pytest.raises(FileNotFoundError):
            store.get_files([(f"{ns}/outputs/missing", tmp_path / "missing")])

    def test_delete_namespace_is_exact(self, store: Store, ns: str) -> None:
        other = f"{ns}-keep"  # a name that merely starts with the first one
        store.put_bytes(f"{ns}/logs/t/1/stdout.txt", b"log")
        store.put_bytes(f"{other}/logs/t/1/stdout.txt", b"kept")
        assert store.delete_namespace(ns) is True
        assert store.size(f"{ns}/logs/t/1/stdout.txt") is None
        assert list(store.list(f"{ns}/")) == []
        assert store.delete_namespace(ns) is False
        assert store.get_bytes(f"{other}/logs/t/1/stdout.txt") == b"kept"
        store.delete_namespace(other)

    def test_keys_need_a_namespace(self, store: Store) -> None:
        with pytest.raises(ValueError):
            store.put_bytes("no-namespace", b"x")

    def test_local_path_only_when_offered(self, store: Store, ns: str) -> None:
        store.put_bytes(f"{ns}/config/c.json", b"{}")
        local = store.local_path(f"{ns}/config/c.json")
        if self.offers_local_paths:
            assert local is not None and local.read_bytes() == b"{}"
        else:
            assert local is None  # nothing on this machine: callers must fetch
