"""Resource and output files against Azurite; state kept in a folder across a restart; the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import models as bm
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from shardrun.emulator import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME

from ..fixtures.azurite import Azurite
from .conftest import client_for, make_job, make_pool, start_emulator, wait_for, wait_task_done

ROOT = Path(__file__).resolve().parents[2]


def container_url(azurite: Azurite, name: str, **permissions: bool) -> tuple[BlobServiceClient, str]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(name)
    sas = generate_container_sas(
        service.account_name,
        name,
        account_key=service.credential.account_key,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return service, f"{azurite.account_url}/{name}?{sas}"


def output(pattern: str, url: str, path: str | None, condition: str) -> bm.OutputFile:
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(
            container=bm.OutputFileBlobContainerDestination(container_url=url, path=path)
        ),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
    )


def test_resource_and_output_files(azurite: Azurite) -> None:
    run = uuid.uuid4().hex[:8]
    service, inputs_url = container_url(azurite, f"in-{run}", read=True, list=True)
    _, outputs_url = container_url(azurite, f"out-{run}", write=True, create=True, add=True)
    inputs = service.get_container_client(f"in-{run}")
    inputs.upload_blob("data/a.txt", b"alpha\n")
    inputs.upload_blob("data/b.txt", b"beta\n")
    inputs.upload_blob("other.txt", b"other\n")
    single = inputs_url.replace(f"/in-{run}?", f"/in-{run}/other.txt?")
    emu = start_emulator()
    try:
        client = client_for(emu)
        make_pool(client)
        make_job(client)
        command = (
            "/bin/sh -c 'mkdir -p out/deep; cat in/data/a.txt in/data/b.txt > out/all.txt;"
            " cp other.txt out/deep/copy.txt; echo done > summary-$AZ_BATCH_TASK_ID.txt; exit ${CODE:-0}'"
        )
        for task_id, code in (("good", "0"), ("bad", "2")):
            outputs = [
                output("out/**/*.txt", outputs_url, "results/ok", "tasksuccess"),
                output("../std*.txt", outputs_url, f"logs/{task_id}", "taskcompletion"),
                # Variables are expanded in the pattern (not in the path), as on a Linux node.
                output("summary-$AZ_BATCH_TASK_ID.txt", outputs_url, f"summary-{task_id}.txt", "taskfailure"),
            ]
            client.create_task(
                "job1",
                bm.BatchTaskCreateOptions(
                    id=task_id,
                    command_line=command,
                    output_files=outputs,
                    environment_settings=[bm.EnvironmentSetting(name="CODE", value=code)],
                    resource_files=[
                        bm.ResourceFile(
                            storage_container_url=inputs_url, blob_prefix="data/", file_path="in"
                        ),
                        bm.ResourceFile(http_url=single, file_path="other.txt", file_mode="0600"),
                    ],
                ),
            )
        assert wait_task_done(client, "job1", "good").execution_info.result == "success"
        assert wait_task_done(client, "job1", "bad").execution_info.result == "failure"
        blobs = {b.name for b in service.get_container_client(f"out-{run}").list_blobs()}
        # tasksuccess: only the good task's files, relative to the pattern's fixed part "out/".
        assert {"results/ok/all.txt", "results/ok/deep/copy.txt"} <= blobs
        assert "summary-bad.txt" in blobs and "summary-good.txt" not in blobs  # taskfailure
        assert {"logs/good/stdout.txt", "logs/good/stderr.txt", "logs/bad/stdout.txt"} <= blobs
        data = service.get_blob_client(f"out-{run}", "results/ok/all.txt").download_blob().readall()
        assert data == b"alpha\nbeta\n"
        assert b"uploaded" in b"".join(client.download_task_file("job1", "good", "fileuploadout.txt"))
        assert b"sig=" not in b"".join(client.download_task_file("job1", "good", "fileuploadout.txt"))
    finally:
        emu.stop()


def test_transfer_failures(azurite: Azurite) -> None:
    run = uuid.uuid4().hex[:8]
    _, read_only = container_url(azurite, f"ro-{run}", read=True, list=True)
    service, gone = container_url(azurite, f"gone-{run}", write=True, create=True, add=True)
    service.delete_container(f"gone-{run}")  # a valid SAS for a container that no longer exists
    emu = start_emulator()
    try:
        client = client_for(emu)
        make_pool(client)
        make_job(client)
        missing = read_only.replace(f"/ro-{run}?", f"/ro-{run}/missing.txt?")
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="nofile",
                command_line="/bin/true",
                constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
                resource_files=[bm.ResourceFile(http_url=missing, file_path="x")],
            ),
        )
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="noupload",
                command_line="/bin/sh -c 'echo x > r.txt'",
                output_files=[output("r.txt", read_only, None, "tasksuccess")],
            ),
        )
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="nocontainer",
                command_line="/bin/sh -c 'echo x > r.txt'",
                output_files=[output("r.txt", gone, None, "tasksuccess")],
            ),
        )
        info = wait_task_done(client, "job1", "nofile").execution_info
        assert info.result == "failure" and info.failure_info.code == "BlobNotFound" and info.retry_count == 0
        assert all("sig=" not in d.value for d in info.failure_info.details)  # SAS never shown
        info = wait_task_done(client, "job1", "noupload").execution_info
        assert (
            info.result == "failure"
            and info.exit_code == 0
            and info.failure_info.code == "FileUploadAccessDenied"  # a read-only SAS: 403
        )
        info = wait_task_done(client, "job1", "nocontainer").execution_info
        assert info.result == "failure" and info.failure_info.code == "FileUploadContainerNotFound"
        assert info.failure_info.category == "usererror" and info.retry_count == 0
    finally:
        emu.stop()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "emulator-state"
    emu = start_emulator(folder=folder)
    client = client_for(emu)
    make_pool(client, nodes=1)
    make_job(client)
    client.create_task("job1", bm.BatchTaskCreateOptions(id="done", command_line="/bin/true"))
    wait_task_done(client, "job1", "done")
    client.create_task("job1", bm.BatchTaskCreateOptions(id="running", command_line="/bin/sleep 60"))
    wait_for(lambda: client.get_task("job1", "running").state == "running", what="task running")
    etag = client.get_job("job1").etag
    emu.stop()

    again = start_emulator(folder=folder)
    try:
        client = client_for(again)
        assert client.get_job("job1").etag == etag
        assert client.get_task("job1", "done").execution_info.result == "success"
        # What was running when the emulator stopped runs again; no user asked, so it is not counted.
        task = client.get_task("job1", "running")
        assert task.state in ("active", "running") and task.execution_info.requeue_count == 0
        counts = client.get_job_task_counts("job1").task_counts  # the indexes are rebuilt on load
        assert (counts.succeeded, counts.active + counts.running) == (1, 1)
        assert wait_for(lambda: client.get_pool("pool1").current_dedicated_nodes == 1)
        client.terminate_task("job1", "running")
        assert b"".join(client.download_task_file("job1", "done", "stdout.txt")) == b""
    finally:
        again.stop()


@pytest.mark.parametrize(
    "argv", [[sys.executable, "-m", "shardrun.emulator"], [sys.executable, "-m", "shardrun", "emulator"]]
)
def test_the_command_starts_and_stops(argv: list[str]) -> None:
    proc = subprocess.Popen(
        [*argv, "--port", "0", "--node-start-seconds", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SHARDRUN_EMULATOR_ACCOUNT_KEY": DEV_ACCOUNT_KEY},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"shardrun batch emulator: account {DEV_ACCOUNT_NAME} at http://127.0.0.1:")
        url = line.split(" at ")[1].strip()
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        client = BatchClient(url, AzureNamedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY))
        make_pool(client, nodes=0)
        assert [p.id for p in client.list_pools()] == ["pool1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_command_refuses_a_public_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shardrun.emulator", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "loopback" in result.stderr
