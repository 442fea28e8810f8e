"""Simulated tasks (--simulate-tasks): 300 tasks complete without processes, each with its output (and
some with their logs) written straight into Azurite; upload failures keep their documented codes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from azure.batch import models as bm
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from shardrun.emulator.execution import AttemptSpec, NodeDirs
from shardrun.emulator.simulate import Simulator, simulated_files

from ..fixtures.azurite import Azurite
from .conftest import client_for, error_of, make_job, make_pool, start_emulator, wait_for, wait_task_done


def sas_url(service: BlobServiceClient, azurite: Azurite, name: str, **permissions: bool) -> str:
    sas = generate_container_sas(
        service.account_name,
        name,
        account_key=service.credential.account_key,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{azurite.account_url}/{name}?{sas}"


def outputs(url: str, task_id: str, logs: bool = True) -> list[bm.OutputFile]:
    def one(pattern: str, path: str, condition: str) -> bm.OutputFile:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(container_url=url, path=path)
            ),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
        )

    files = [one("out-$AZ_BATCH_TASK_ID.txt", f"outputs/{task_id}.txt", "tasksuccess")]
    return [*files, one("../std*.txt", f"logs/{task_id}", "taskcompletion")] if logs else files


def test_300_simulated_tasks_write_their_outputs_to_azurite(azurite: Azurite) -> None:
    run = uuid.uuid4().hex[:8]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(f"sim-{run}")
    service.create_container(f"simro-{run}")
    url = sas_url(service, azurite, f"sim-{run}", write=True, create=True, add=True)
    read_only = sas_url(service, azurite, f"simro-{run}", read=True, list=True)
    emu = start_emulator(simulate_seconds=(0.01, 0.05), simulate_seed=3)
    try:
        client = client_for(emu)
        make_pool(client, nodes=2, slots=50)
        make_job(client)
        ids = [f"t{i:03d}" for i in range(300)]
        for start in range(0, 300, 100):
            group = [
                bm.BatchTaskCreateOptions(
                    id=task_id,
                    command_line="/no/such/program",  # never started
                    resource_files=[bm.ResourceFile(http_url=f"{azurite.account_url}/in/{task_id}.csv?sig=x",
                                                    file_path="in.csv")],  # never fetched
                    output_files=outputs(url, task_id, logs=task_id.endswith("7")),  # 30 with logs
                )
                for task_id in ids[start : start + 100]
            ]
            client.create_task_collection("job1", bm.BatchTaskGroup(task_values=group))
        client.create_task("job1", bm.BatchTaskCreateOptions(
            id="readonly", command_line="x", output_files=outputs(read_only, "readonly")))
        counts = wait_for(
            lambda: (c := client.get_job_task_counts("job1").task_counts).completed == 301 and c,
            timeout=120,
            what="301 simulated tasks",
        )
        assert (counts.succeeded, counts.failed) == (300, 1)
        blobs = {b.name for b in service.get_container_client(f"sim-{run}").list_blobs()}
        assert {f"outputs/{t}.txt" for t in ids} == {b for b in blobs if b.startswith("outputs/")}
        logs = {f"logs/{t}/{s}.txt" for t in ids if t.endswith("7") for s in ("stdout", "stderr")}
        assert logs == {b for b in blobs if b.startswith("logs/")}
        container = service.get_container_client(f"sim-{run}")
        data = container.download_blob("outputs/t007.txt").readall()
        assert data == b"job1/t007: /devstoreaccount1/in/t007.csv\n"
        assert container.download_blob("logs/t007/stdout.txt").readall().startswith(b"simulated task t007 on ")
        task = client.get_task("job1", "t007")
        assert task.execution_info.exit_code == 0 and task.node_info.pool_id == "pool1"
        info = wait_task_done(client, "job1", "readonly").execution_info
        assert (info.exit_code, info.failure_info.code) == (0, "FileUploadAccessDenied")
        assert error_of(lambda: list(client.list_task_files("job1", "t007"))).error.code == "TaskFilesUnavailable"
    finally:
        emu.stop()


def test_durations_are_seeded_and_patterns_name_one_output() -> None:
    def spec(task_id: str) -> AttemptSpec:
        return AttemptSpec(
            "a", "u", "p", "job", task_id, "n", True, NodeDirs(__import__("pathlib").Path("/x")), "",
            {}, [], [], None, "process", (), False, None,
        )

    one, same, other = Simulator((1, 5), 7, 1), Simulator((1, 5), 7, 1), Simulator((1, 5), 8, 1)
    draws = [one.duration(spec(f"t{i}")) for i in range(20)]
    assert draws == [same.duration(spec(f"t{i}")) for i in range(20)]
    assert draws != [other.duration(spec(f"t{i}")) for i in range(20)]
    assert all(1 <= d <= 5 for d in draws) and len(set(draws)) == 20
    assert simulated_files("out/**/*.csv", "t1", b"o", b"x") == [("t1.csv", "t1.csv", b"x")]
    assert simulated_files("../std*.txt", "t1", b"o", b"x") == [
        ("stdout.txt", "stdout.txt", b"o"), ("stderr.txt", "stderr.txt", b"")
    ]
    assert simulated_files("../fileupload*.txt", "t1", b"o", b"x") == []
