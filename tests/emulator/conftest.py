"""Fixtures for the Batch emulator tests: an in-process emulator that checks its own responses
against the spec, and the real azure-batch SDK pointed at it with Shared Key."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest, HttpResponse

from shardrun.emulator import Emulator

from ..fixtures.emulator import start_emulator

IMAGE = bm.BatchVmImageReference(publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204", version="latest")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = start_emulator()
    try:
        yield emu
    finally:
        emu.stop()


def client_for(emu: Emulator, key: str | None = None, **kwargs: Any) -> BatchClient:
    credential = AzureNamedKeyCredential(emu.config.account_name, key or emu.config.account_key)
    return BatchClient(emu.url, credential, **kwargs)


@pytest.fixture
def client(emulator: Emulator) -> BatchClient:
    # No client retries: a test sees exactly what the emulator answered.
    return client_for(emulator, retry_total=0)


def send(client: BatchClient, method: str, path: str, body: Any = None, **headers: str) -> HttpResponse:
    """A raw request through the SDK's own pipeline (so it is signed with Shared Key)."""
    sep = "&" if "?" in path else "?"
    request = HttpRequest(method, f"{path}{sep}api-version=2025-06-01", json=body, headers=headers or None)
    return client.send_request(request)


def error_of(call: Callable[[], Any]) -> HttpResponseError:
    """Run a call that must fail and return the SDK exception."""
    with pytest.raises(HttpResponseError) as info:
        call()
    return info.value


def make_pool(
    client: BatchClient,
    pool_id: str = "pool1",
    *,
    nodes: int = 1,
    spot: int = 0,
    slots: int = 2,
    containers: bool = False,
    images: tuple[str, ...] = ("localhost/app:1",),
    **extra: Any,
) -> None:
    config = bm.VirtualMachineConfiguration(
        image_reference=IMAGE, node_agent_sku_id="batch.node.ubuntu 22.04"
    )
    if containers:
        # With --container-runtime podman, nodes pull these at start: name images that exist.
        config.container_configuration = bm.BatchContainerConfiguration(
            type="dockerCompatible", container_image_names=list(images)
        )
    options = bm.BatchPoolCreateOptions(
        id=pool_id,
        vm_size="standard_d2s_v3",
        virtual_machine_configuration=config,
        task_slots_per_node=slots,
        **extra,
    )
    if not extra.get("enable_auto_scale"):
        options.target_dedicated_nodes = nodes
        options.target_low_priority_nodes = spot
    client.create_pool(options)


def make_job(client: BatchClient, job_id: str = "job1", pool_id: str = "pool1", **extra: Any) -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **extra)
    )


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `check()` is truthy (bounded) and return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_task_done(client: BatchClient, job_id: str, task_id: str, timeout: float = 30.0) -> bm.BatchTask:
    def done() -> bm.BatchTask | None:
        task = client.get_task(job_id, task_id)
        return task if task.state == bm.BatchTaskState.COMPLETED else None

    result: bm.BatchTask = wait_for(done, timeout, f"task {task_id} to complete")
    return result
