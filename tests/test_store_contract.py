"""The store contract (shardrun.testing.store_contract) on every store: memory, the local folder,
and Azure Blob against Azurite."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.core.store import Store
from shardrun.providers.local.memory import MemoryStore
from shardrun.providers.local.store import LocalStore
from shardrun.testing.store_contract import StoreContract

from .fixtures.azurite import Azurite


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()


class TestLocalStore(StoreContract):
    offers_local_paths = True

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LocalStore(tmp_path / "store")


class TestBlobStore(StoreContract):
    @pytest.fixture
    def store(self, azurite: Azurite) -> Store:
        from shardrun.providers.azure.blob import open_blob_store

        # small blocks, so the large file goes in several
        return open_blob_store(connection_string=azurite.connection_string, block_size=self.block_size,
                               max_concurrency=4)
