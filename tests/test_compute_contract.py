"""The compute contract (shardrun.testing.compute_contract) on every backend: local processes,
local podman containers, and Azure Batch (our emulator, with Azurite for Blob Storage)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from shardrun.core.compute import ComputeBackend
from shardrun.core.spec import parse_spec
from shardrun.core.store import Store
from shardrun.emulator import Emulator
from shardrun.providers.azure import BATCH
from shardrun.providers.azure.batch import AzureBatchBackend
from shardrun.providers.azure.batch_tasks import NO_OUTPUT_EXIT
from shardrun.providers.azure.blob import BlobStore, open_blob_store
from shardrun.providers.local.memory import MemoryStore
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.runtime import ContainerSettings
from shardrun.providers.local.store import LocalStore
from shardrun.testing.compute_contract import ComputeContract, StorageTrouble

from .fixtures.azurite import Azurite
from .fixtures.emulator import start_emulator


class TestLocalProcesses(ComputeContract):
    @pytest.fixture
    def backend(self) -> ComputeBackend:
        return LocalBackend("process", kill_grace=1.0)

    @pytest.fixture(params=["local", "memory"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
        return LocalStore(tmp_path / "store") if request.param == "local" else MemoryStore()


@pytest.fixture(scope="module")
def podman_image(request: pytest.FixtureRequest) -> str:
    """The session's busybox test image, once podman is known to run containers here."""
    engine = request.getfixturevalue("podman")  # skips (fails in CI) when podman is not installed
    probe = engine.call("info")
    if probe.returncode != 0:
        reason = f"podman is installed but not usable: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    image: str = request.getfixturevalue("test_image")
    return image


class TestLocalPodman(ComputeContract):

    @pytest.fixture
    def backend(self, podman_image: str) -> ComputeBackend:
        return LocalBackend("podman", kill_grace=2.0, containers=ContainerSettings(podman_image, ("--network", "none")))

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LocalStore(tmp_path / "store")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = start_emulator()  # tasks run as processes, nodes start in 0.2 s
    try:
        yield emu
    finally:
        emu.stop()


class MissingOutputContainer(BlobStore):
    """Hands Batch an output container that does not exist, so every upload fails on the node."""

    def container_write_url(self, namespace: str, lifetime: float) -> str:
        return super().container_write_url(f"{namespace}-gone", lifetime)


class TestAzureBatch(ComputeContract):
    reports_pid = False  # the attempt runs on a node
    reports_output_size = False  # the node uploads the output; the client does not see it
    stores_empty_logs = True  # Batch uploads ../std*.txt whatever their size
    sees_each_attempt = False  # Batch retries on the node and reports the last attempt only
    refuses_missing_program = False  # the node's shell starts the app: a missing one exits 127
    retries_failed_uploads = False  # the service does not retry an output-upload failure
    no_output_exit_code = NO_OUTPUT_EXIT  # the task script's, which checks OUTPUT_PATH on the node

    @pytest.fixture
    def store(self, azurite: Azurite) -> Store:
        return open_blob_store(connection_string=azurite.connection_string)

    @pytest.fixture
    def storage_trouble(self, azurite: Azurite) -> StorageTrouble:
        conn = open_blob_store(connection_string=azurite.connection_string).conn
        return StorageTrouble(MissingOutputContainer(conn), "FileUploadContainerNotFound")

    @pytest.fixture
    def backend(self, emulator: Emulator, tmp_path: Path) -> ComputeBackend:
        spec = parse_spec({
            "app": {"command": ["true"]},
            "split": {"input": "in.txt"},
            "merge": {"output": "out.txt"},
            "run": {"backend": BATCH, "storage": "blob"},
            # one node with four slots; short polls keep each test to a few seconds
            "batch": {"account_url": emulator.url, "account_name": emulator.config.account_name,
                      "auth": "shared_key", "dedicated_nodes": 1, "task_slots_per_node": 4,
                      "poll_interval": 0.2},
        }, tmp_path / "job.toml", tmp_path)
        client = BatchClient(emulator.url, AzureNamedKeyCredential(emulator.config.account_name,
                                                                   emulator.config.account_key))
        return AzureBatchBackend(spec, client=client)
