"""Managed identities for storage: a pool created with identities through the management-plane
stand-in, tasks whose resource and output files use identityReference (no SAS), outputs landing in
Azurite, and the access errors a node reports otherwise."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from shardrun.emulator import Emulator

from ..fixtures.azurite import Azurite
from .conftest import client_for, error_of, make_job, send, start_emulator, wait_for, wait_task_done

MI = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}"
READER, SPARE, STRANGER = MI.format("reader"), MI.format("spare"), MI.format("stranger")
IMAGE = {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"}
VM = {"imageReference": IMAGE, "nodeAgentSKUId": "batch.node.ubuntu 22.04"}  # the data plane's spelling
ARM_VM = {"imageReference": IMAGE, "nodeAgentSkuId": "batch.node.ubuntu 22.04"}  # the management plane's


def arm_pool_path(emu: Emulator, pool_id: str) -> str:
    return (
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Batch"
        f"/batchAccounts/{emu.config.account_name}/pools/{pool_id}"
    )


def arm_pool(identities: list[str], **vm: Any) -> dict[str, Any]:
    return {
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {i: {} for i in identities}},
        "properties": {
            "vmSize": "STANDARD_D2S_V3",
            "deploymentConfiguration": {"virtualMachineConfiguration": {**ARM_VM, **vm}},
            "scaleSettings": {"fixedScale": {"targetDedicatedNodes": 1}},
            "taskSlotsPerNode": 4,
        },
    }


def arm(client: BatchClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A management-plane request through the SDK's pipeline (signed with Shared Key): status, JSON."""
    try:
        response = send(client, method, path, body)
    except HttpResponseError as error:
        assert error.response is not None
        response = error.response
    return response.status_code, response.json() if response.text() else None


def output(pattern: str, url: str, path: str, identity: str | None) -> bm.OutputFile:
    reference = bm.BatchNodeIdentityReference(resource_id=identity) if identity else None
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(
                container_url=url, path=path, identity_reference=reference
            )
        ),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
    )


def add(client: BatchClient, task_id: str, command: str, **extra: Any) -> None:
    client.create_task("job1", bm.BatchTaskCreateOptions(id=task_id, command_line=command, **extra))


def test_identity_reference_reads_and_writes_blobs(azurite: Azurite) -> None:
    run = uuid.uuid4().hex[:8]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    inputs = service.create_container(f"mi-in-{run}")
    service.create_container(f"mi-out-{run}")
    inputs.upload_blob("data/a.txt", b"alpha\n")
    inputs.upload_blob("single.txt", b"single\n")
    in_url, out_url = f"{azurite.account_url}/mi-in-{run}", f"{azurite.account_url}/mi-out-{run}"
    emu = start_emulator(identity_storage={READER: azurite.connection_string})
    try:
        client = client_for(emu)
        status, view = arm(client, "PUT", arm_pool_path(emu, "mipool"), arm_pool([READER, SPARE]))
        assert status == 200, view
        assert set(view["identity"]["userAssignedIdentities"]) == {READER, SPARE}
        assert view["identity"]["userAssignedIdentities"][READER]["principalId"]
        pool = client.get_pool("mipool")  # the data plane shows the identities, read-only
        assert [i.resource_id for i in pool.identity.user_assigned_identities] == [READER, SPARE]
        assert pool.identity.user_assigned_identities[0].client_id
        make_job(client, pool_id="mipool")
        reader = bm.BatchNodeIdentityReference(resource_id=READER)
        add(
            client,
            "mi",
            "/bin/sh -c 'cat in/data/a.txt single.txt > result.txt'",
            resource_files=[
                bm.ResourceFile(storage_container_url=in_url, blob_prefix="data/", file_path="in",
                                identity_reference=reader),
                bm.ResourceFile(http_url=f"{in_url}/single.txt", file_path="single.txt", identity_reference=reader),
            ],
            output_files=[output("result.txt", out_url, "mi/result.txt", READER),
                          output("../std*.txt", out_url, "mi/logs", READER)],
        )
        # The SAS-less URLs without an identity are fetched anonymously: Azurite answers 403.
        add(client, "nosas", "/bin/true",
            resource_files=[bm.ResourceFile(http_url=f"{in_url}/single.txt", file_path="s.txt")])
        add(client, "noupload", "/bin/sh -c 'echo x > r.txt'",
            output_files=[output("r.txt", out_url, "noupload.txt", None)])
        # An identity the pool does not have, and one it has with no role on this storage account.
        add(client, "stranger", "/bin/true",
            resource_files=[bm.ResourceFile(http_url=f"{in_url}/single.txt", file_path="s.txt",
                                            identity_reference=bm.BatchNodeIdentityReference(resource_id=STRANGER))])
        add(client, "spare", "/bin/sh -c 'echo x > r.txt'",
            output_files=[output("r.txt", out_url, "spare.txt", SPARE)])

        info = wait_task_done(client, "job1", "mi").execution_info
        assert info.result == "success", info.failure_info
        blobs = service.get_container_client(f"mi-out-{run}")
        assert blobs.download_blob("mi/result.txt").readall() == b"alpha\nsingle\n"
        assert {"mi/logs/stdout.txt", "mi/logs/stderr.txt"} <= {b.name for b in blobs.list_blobs()}

        info = wait_task_done(client, "job1", "nosas").execution_info
        assert (info.result, info.failure_info.code) == ("failure", "BlobAccessDenied")
        info = wait_task_done(client, "job1", "noupload").execution_info
        assert (info.exit_code, info.failure_info.code) == (0, "FileUploadAccessDenied")
        info = wait_task_done(client, "job1", "stranger").execution_info
        details = {d.name: d.value for d in info.failure_info.details}
        assert info.failure_info.code == "BlobAccessDenied" and "not assigned to the pool" in details["IdentityReference"]
        info = wait_task_done(client, "job1", "spare").execution_info
        details = {d.name: d.value for d in info.failure_info.details}
        assert info.failure_info.code == "FileUploadAccessDenied" and "no access" in details["IdentityReference"]
        assert "spare.txt" not in {b.name for b in blobs.list_blobs()}
        assert "AccountKey" not in str(client.get_task("job1", "spare").as_dict())
    finally:
        emu.stop()


def test_only_the_management_plane_gives_a_pool_identities(client: BatchClient, emulator: Emulator) -> None:
    body = {
        "id": "dp",
        "vmSize": "standard_d2s_v3",
        "virtualMachineConfiguration": VM,
        "identity": {"type": "UserAssigned", "userAssignedIdentities": [{"resourceId": READER}]},
    }
    status, error = arm(client, "POST", "/pools", body)  # not a property of BatchPoolCreateOptions
    assert status == 400 and error["code"] == "InvalidRequestBody"
    registry = {"registryServer": "myacr.azurecr.io", "identityReference": {"resourceId": READER}}
    containers = {"type": "dockerCompatible", "containerImageNames": ["x"], "containerRegistries": [registry]}
    body = {"id": "dp", "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": {**VM, "containerConfiguration": containers}}
    status, error = arm(client, "POST", "/pools", body)  # the pool has no identity to log in with
    assert status == 400 and error["code"] == "InvalidPropertyValue"

    arm_containers = {**containers, "type": "DockerCompatible"}
    path = arm_pool_path(emulator, "armpool")
    status, error = arm(client, "PUT", path, arm_pool([SPARE], containerConfiguration=arm_containers))
    assert status == 400 and "not one of the pool's" in error["error"]["message"]
    status, view = arm(client, "PUT", path, arm_pool([READER], containerConfiguration=arm_containers))
    assert status == 200, view
    vm = view["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"]
    assert vm["containerConfiguration"]["type"] == "DockerCompatible" and vm["nodeAgentSkuId"]
    pool = client.get_pool("armpool")
    registries = pool.virtual_machine_configuration.container_configuration.container_registries
    assert registries[0].identity_reference.resource_id == READER
    assert pool.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 22.04"
    assert arm(client, "GET", path)[1]["name"] == "armpool"
    assert arm(client, "PUT", path, arm_pool([READER]))[1]["error"]["code"] == "PoolExists"
    status, error = arm(client, "PUT", arm_pool_path(emulator, "bad"), {"properties": {"vmSize": "x", "startTask": {}}})
    assert status == 400 and "startTask" in error["error"]["message"]
    assert arm(client, "DELETE", path)[0] == 200
    wait_for(lambda: "armpool" not in {p.id for p in client.list_pools()}, what="the pool deleted")
    assert error_of(lambda: client.get_pool("armpool")).error.code == "PoolNotFound"


def test_the_identity_and_simulate_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import shardrun.emulator as package
    from shardrun.emulator.command import emulator_command

    handlers: dict[int, Any] = {}
    seen: list[Any] = []
    monkeypatch.setattr("signal.signal", lambda sig, handler: handlers.__setitem__(sig, handler))

    class FakeEmulator:
        url = "http://127.0.0.1:1"

        def __init__(self, config: Any) -> None:
            seen.append(config)

        def __enter__(self) -> FakeEmulator:
            handlers[15](15, None)  # as if SIGTERM came at once
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(package, "Emulator", FakeEmulator, raising=False)
    secret = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0LWtleQ=="
    monkeypatch.setenv("SHARDRUN_EMULATOR_IDENTITY_STORAGE", f"*={secret} {READER}=a2V5")
    result = CliRunner().invoke(emulator_command, ["--port", "0", "--simulate-tasks", "1-3", "--simulate-seed", "5"])
    assert result.exit_code == 0, result.output
    config = seen[0]
    assert dict(config.identity_storage) == {"*": secret, READER: "a2V5"}
    assert (config.simulate_seconds, config.simulate_seed) == ((1.0, 3.0), 5)
    assert "c2VjcmV0" not in repr(config)  # the credential is kept out of the config's repr
    result = CliRunner().invoke(emulator_command, ["--simulate-tasks", "3-1"])
    assert result.exit_code == 2
    monkeypatch.setenv("SHARDRUN_EMULATOR_IDENTITY_STORAGE", "c2VjcmV0LWtleQ==")  # a key without an ID
    result = CliRunner().invoke(emulator_command, [])
    assert result.exit_code == 2 and "ID=CREDENTIAL" in result.output and "c2VjcmV0" not in result.output
