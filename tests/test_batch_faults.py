"""What Azure does to a run, rehearsed on the emulator and Azurite: throttling without Retry-After,
lost answers and resets, quota and capacity errors on the pool's resize; and the URLs tasks get
(no SAS outlived by the job, or no SAS at all with [batch] node_identity)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.batch import models as bm
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from shardrun.cli import main
from shardrun.core.compute import RunContext, TaskSpec
from shardrun.core.errors import UsageError
from shardrun.core.spec import load_spec
from shardrun.emulator.faults import FaultConfig
from shardrun.providers.azure.batch_files import SAS_MARGIN, RunFiles
from shardrun.providers.azure.batch_tasks import build_task, sas_expiry
from shardrun.providers.azure.blob import open_blob_store
from shardrun.providers.azure.settings import BatchSection, batch_settings

from .emulator.test_identity import arm, arm_pool_path
from .fixtures.azurite import DEV_KEY, Azurite
from .fixtures.emulator import start_emulator
from .test_batch_backend import batch_client, batch_job, ledger, left_in

RESULT_40 = "".join(f"LINE {i}\n" for i in range(40))
IDENTITY = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/shardrun-nodes")


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from shardrun.emulator import DEV_ACCOUNT_KEY

    monkeypatch.setenv("AZURE_BATCH_KEY", DEV_ACCOUNT_KEY)
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_gets_the_right_result_through_throttling_lost_answers_and_resets(
    seed: int, azurite: Azurite, keys: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Before retry.py, throttling alone (0.15, no Retry-After) ended 2 runs of 4 with exit 3.
    faults = FaultConfig(seed=seed, throttle_rate=0.15, busy_rate=0.05, retry_after_share=0.0,
                         drop_response_rate=0.1, reset_rate=0.05)
    emu = start_emulator(faults=faults)
    try:
        job = batch_job(tmp_path, emu, azurite, per_task=4)
        assert main(["run", str(job)]) == 0, capsys.readouterr().err
        assert (tmp_path / "result.txt").read_text() == RESULT_40
        assert left_in(batch_client(emu)) == ([], [])
        assert emu.faults.request_faults + emu.faults.drops + emu.faults.resets >= 3
    finally:
        emu.stop()


def test_a_quota_error_on_the_first_resize_stops_the_run_and_deletes_what_it_made(
    azurite: Azurite, keys: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = start_emulator(faults=FaultConfig(resize_error="AccountCoreQuotaReached"))
    try:
        job = batch_job(tmp_path, emu, azurite, batch={"dedicated_nodes": 2})
        assert main(["run", str(job)]) == 3
        err = capsys.readouterr().err
        line = next(x for x in err.splitlines() if "cannot get any node" in x)
        assert "AccountCoreQuotaReached: The specified account has reached core quota." in line
        assert "ask for more dedicated cores" in line and "Spot" in line
        assert "Traceback" not in err
        assert left_in(batch_client(emu)) == ([], [])
        run_id = ledger(shardrun_home).runs()[0].run_id
        live = [kind for kind, _ in ledger(shardrun_home).resources(run_id) if kind.startswith("batch")]
        assert live == []
        assert not (tmp_path / "result.txt").exists()
    finally:
        emu.stop()


def test_a_capacity_error_that_leaves_spot_nodes_is_said_and_the_run_finishes_on_them(
    azurite: Azurite, keys: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # AccountCoreQuotaReached stops the dedicated nodes only: the two Spot nodes arrive.
    emu = start_emulator(faults=FaultConfig(resize_error="AccountCoreQuotaReached"))
    try:
        job = batch_job(tmp_path, emu, azurite, batch={"dedicated_nodes": 1, "spot_nodes": 2})
        assert main(["run", str(job)]) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert "could not grow (AccountCoreQuotaReached" in err and "node(s) it has" in err
        assert (tmp_path / "result.txt").read_text() == RESULT_40
        assert left_in(batch_client(emu)) == ([], [])
    finally:
        emu.stop()


# -- the URLs a task gets ----------------------------------------------------------------------

def run_files(job: Path, store: Any, run_id: str, tmp_path: Path) -> RunFiles:
    spec = load_spec(job)
    settings = batch_settings(spec)
    assert settings is not None
    ctx = RunContext(run_id=run_id, command=["python3", "-c", "pass", "{input}", "{output}"],
                     store=store, scratch=tmp_path, config_key=f"{run_id}/config/config.json")
    return RunFiles(spec, settings, ctx, None)


def all_urls(files: RunFiles, run_id: str) -> list[str]:
    template = files.template()
    task = files.task_files(TaskSpec("task-00001", f"{run_id}/inputs/task-00001/piece.txt",
                                     f"{run_id}/outputs/task-00001/out.txt"), template)
    return [template.output_container_url, *(u for _, u in template.shared_files),
            *(u for _, u in task.inputs)]


def test_every_sas_a_task_gets_outlives_the_jobs_max_wall_clock(
    azurite: Azurite, tmp_path: Path,
) -> None:
    job = batch_job(tmp_path, start_stub(), azurite, batch={"max_wall_clock": "30h"})
    store = open_blob_store(connection_string=azurite.connection_string)
    urls = all_urls(run_files(job, store, "run-sas", tmp_path), "run-sas")
    job_end = dt.datetime.now(dt.UTC) + dt.timedelta(hours=30)
    assert len(urls) == 3
    for url in urls:
        expires = sas_expiry(url)
        assert expires is not None and expires >= job_end + dt.timedelta(seconds=SAS_MARGIN * 0.9), url


def test_a_user_sas_that_ends_before_the_job_is_refused_with_what_to_do(
    azurite: Azurite, tmp_path: Path,
) -> None:
    job = batch_job(tmp_path, start_stub(), azurite, batch={"max_wall_clock": "6h"})
    token = generate_account_sas("devstoreaccount1", DEV_KEY, ResourceTypes(container=True, object=True),
                                 AccountSasPermissions(read=True, write=True, create=True, list=True),
                                 expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    store = open_blob_store(account_url=azurite.account_url, sas_token=token)
    with pytest.raises(UsageError, match=r"the storage SAS expires at .* before \[batch\] max_wall_clock") as info:
        run_files(job, store, "run-short", tmp_path).template()
    assert "node_identity" in str(info.value) and token not in str(info.value)


def start_stub() -> Any:
    """Only what batch_job reads of an emulator: for tests that never call Batch."""
    return SimpleNamespace(url="http://127.0.0.1:9", config=SimpleNamespace(account_name="devbatchaccount1"))


def test_with_node_identity_tasks_get_plain_urls_and_an_identity_reference(
    azurite: Azurite, tmp_path: Path,
) -> None:
    job = batch_job(tmp_path, start_stub(), azurite,
                    batch={"pool_id": "my-identity-pool", "node_identity": IDENTITY})
    store = open_blob_store(connection_string=azurite.connection_string)
    files = run_files(job, store, "run-mi", tmp_path)
    urls = all_urls(files, "run-mi")
    assert all("?" not in u and u.startswith(azurite.account_url + "/run-mi") for u in urls), urls
    template = files.template()
    task = build_task(template, "run-mi", "task-00001", 1, files.task_files(
        TaskSpec("task-00001", "run-mi/inputs/task-00001/piece.txt", "run-mi/outputs/task-00001/o.txt"),
        template))
    body = json.loads(json.dumps(task.as_dict()))
    # The request shape (BatchService.json: ResourceFile, OutputFileBlobContainerDestination).
    for resource_file in body["resourceFiles"]:
        assert resource_file["identityReference"] == {"resourceId": IDENTITY}
        assert "?" not in resource_file["httpUrl"]
    for output in body["outputFiles"]:
        container = output["destination"]["container"]
        assert container["identityReference"] == {"resourceId": IDENTITY}
        assert container["containerUrl"] == f"{azurite.account_url}/run-mi"
    assert "sig=" not in json.dumps(body)


def test_node_identity_needs_a_pool_that_has_it(tmp_path: Path, azurite: Azurite) -> None:
    with pytest.raises(ValueError, match="node_identity needs pool_id"):
        BatchSection(account_url="https://a.westeurope.batch.azure.com", dedicated_nodes=1,
                     node_identity=IDENTITY)
    with pytest.raises(ValueError, match="user-assigned managed identity"):
        BatchSection(account_url="https://a.westeurope.batch.azure.com", pool_id="p",
                     node_identity="my-identity")


def test_a_run_with_node_identity_reads_and_writes_blobs_as_the_pools_identity(
    azurite: Azurite, keys: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A pool made through the management plane (Azure Resource Manager) with a user-assigned
    identity; tasks reach Blob Storage as that identity (in development, Azurite's key), with plain
    URLs: no SAS anywhere."""
    emu = start_emulator(identity_storage={IDENTITY: azurite.connection_string})
    try:
        client = batch_client(emu)
        status, view = arm(client, "PUT", arm_pool_path(emu, "my-identity-pool"),
                           arm_pool([IDENTITY], nodes=2, slots=2))
        assert status == 200, view
        job = batch_job(tmp_path, emu, azurite,
                        batch={"pool_id": "my-identity-pool", "node_identity": IDENTITY})
        code = main(["run", str(job)])
        err = capsys.readouterr().err
        assert code == 0, err
        assert (tmp_path / "result.txt").read_text() == RESULT_40
        assert [p.id for p in client.list_pools()] == ["my-identity-pool"]  # the user's: kept
        assert "sig=" not in err
    finally:
        emu.stop()


def test_a_pool_without_the_identity_stops_the_run_before_any_task(
    azurite: Azurite, keys: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    emu = start_emulator()
    try:
        client = batch_client(emu)
        client.create_pool(bm.BatchPoolCreateOptions(
            id="plain-pool", vm_size="standard_d2s_v3", target_dedicated_nodes=0,
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(publisher="microsoft-dsvm", offer="ubuntu-hpc",
                                                         sku="2404", version="latest"),
                node_agent_sku_id="batch.node.ubuntu 24.04")))
        job = batch_job(tmp_path, emu, azurite, batch={"pool_id": "plain-pool", "node_identity": IDENTITY})
        assert main(["run", str(job)]) == 3
        err = capsys.readouterr().err
        assert "pool plain-pool does not have the managed identity" in err
        assert list(client.list_jobs()) == []
    finally:
        emu.stop()


def arm_pool(identities: list[str], *, nodes: int, slots: int) -> dict[str, Any]:
    """A pool as Azure Resource Manager creates it, with user-assigned identities."""
    image = {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2404", "version": "latest"}
    return {
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {i: {} for i in identities}},
        "properties": {
            "vmSize": "STANDARD_D2S_V3",
            "deploymentConfiguration": {"virtualMachineConfiguration": {
                "imageReference": image, "nodeAgentSkuId": "batch.node.ubuntu 24.04"}},
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": nodes}},
            "taskSlotsPerNode": slots,
        },
    }
