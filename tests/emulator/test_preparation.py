"""Job Preparation Tasks: once per node before the job's first task there, waitForSuccess, retries,
resource files, the status list, and the IDs the service reserves."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from ..fixtures.azurite import Azurite
from .conftest import client_for, error_of, make_job, make_pool, start_emulator, wait_for, wait_task_done
from .test_files_state import container_url

SHOW = "/bin/sh -c 'cat $AZ_BATCH_NODE_SHARED_DIR/prepared.txt; echo $AZ_BATCH_JOB_PREP_WORKING_DIR'"


def prep_status(
    client: BatchClient, job_id: str = "job1"
) -> list[bm.BatchJobPreparationAndReleaseTaskStatus]:
    return list(client.list_job_preparation_and_release_task_status(job_id))


def done_prep(client: BatchClient, job_id: str = "job1") -> bm.BatchJobPreparationTaskExecutionInfo:
    def check() -> bm.BatchJobPreparationTaskExecutionInfo | None:
        found = prep_status(client, job_id)
        info = found[0].job_preparation_task_execution_info if found else None
        return info if info is not None and info.state == "completed" else None

    result: bm.BatchJobPreparationTaskExecutionInfo = wait_for(check, what=f"the preparation of {job_id}")
    return result


def test_preparation_runs_once_per_node_before_the_tasks(azurite: Azurite) -> None:
    run = uuid.uuid4().hex[:8]
    service, url = container_url(azurite, f"prep-{run}", read=True, list=True)
    service.get_container_client(f"prep-{run}").upload_blob("setup.txt", b"from storage\n")
    blob = url.replace(f"/prep-{run}?", f"/prep-{run}/setup.txt?")
    emu = start_emulator()
    try:
        client = client_for(emu)
        make_pool(client, nodes=1, slots=2)
        prep = bm.BatchJobPreparationTask(
            command_line="/bin/sh -c 'cat setup.txt >> $AZ_BATCH_NODE_SHARED_DIR/prepared.txt; sleep 0.3'",
            resource_files=[bm.ResourceFile(http_url=blob, file_path="setup.txt")],
        )
        make_job(client, job_preparation_task=prep)
        job = client.get_job("job1")  # the service fills in the ID and the defaults
        assert job.job_preparation_task.id == "jobpreparation" and job.job_preparation_task.wait_for_success
        assert job.job_preparation_task.rerun_on_node_reboot_after_success
        for task_id in ("a", "b", "c"):
            client.create_task("job1", bm.BatchTaskCreateOptions(id=task_id, command_line=SHOW))
        tasks = [wait_task_done(client, "job1", t) for t in ("a", "b", "c")]
        info = done_prep(client)
        assert (info.result, info.exit_code, info.retry_count) == ("success", 0, 0)
        assert info.task_root_directory == "workitems/job1/job-1/jobpreparation"
        assert all(t.execution_info.result == "success" for t in tasks)
        assert all(t.execution_info.start_time >= info.end_time for t in tasks)  # waitForSuccess
        out = b"".join(client.download_task_file("job1", "c", "stdout.txt")).decode().splitlines()
        assert out == ["from storage", out[1]] and out[1].endswith("/workitems/job1/job-1/jobpreparation/wd")
        [status] = prep_status(client)  # one node, one run: not once per task
        assert status.pool_id == "pool1" and status.node_id == tasks[0].node_info.node_id
        error = error_of(
            lambda: client.create_task(
                "job1", bm.BatchTaskCreateOptions(id="JobPreparation", command_line="x")
            )
        )
        assert error.status_code == 409 and error.error.code == "TaskIdSameAsJobPreparationTask"
        make_job(client, "plain")
        error = error_of(lambda: prep_status(client, "plain"))
        assert error.status_code == 409 and error.error.code == "JobPreparationTaskNotSpecified"
    finally:
        emu.stop()


@pytest.mark.parametrize("wait", [True, False])
def test_failed_preparation_and_wait_for_success(client: BatchClient, wait: bool) -> None:
    make_pool(client, nodes=1)
    prep = bm.BatchJobPreparationTask(
        id="setup",
        command_line="/bin/sh -c 'exit 3'",
        wait_for_success=wait,
        constraints=bm.BatchTaskConstraints(max_task_retry_count=1),
    )
    make_job(client, job_preparation_task=prep)
    client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    info = done_prep(client)
    assert (info.result, info.exit_code, info.retry_count) == ("failure", 3, 1)  # retried once
    assert info.failure_info.code == "FailureExitCode" and info.last_retry_time is not None
    if wait:
        # The job's tasks never run on that node; it stays available to other jobs.
        assert client.get_task("job1", "t").state == "active"
        make_job(client, "other")
        client.create_task("other", bm.BatchTaskCreateOptions(id="o", command_line="/bin/true"))
        assert wait_task_done(client, "other", "o").execution_info.result == "success"
        assert client.get_task("job1", "t").state == "active"
    else:
        assert wait_task_done(client, "job1", "t").execution_info.result == "success"


def test_preparation_that_cannot_start_is_not_retried(client: BatchClient) -> None:
    make_pool(client, nodes=1)
    prep = bm.BatchJobPreparationTask(
        command_line="/no/such/program", constraints=bm.BatchTaskConstraints(max_task_retry_count=3)
    )
    make_job(client, job_preparation_task=prep)
    client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    info = done_prep(client)
    assert (info.result, info.retry_count, info.failure_info.code) == ("failure", 0, "CommandProgramNotFound")
    assert client.get_task("job1", "t").state == "active"


def test_a_node_that_boots_again_reruns_the_preparation_if_asked(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    emu = start_emulator(folder=folder)
    client = client_for(emu)
    make_pool(client, nodes=1, slots=2)
    for job_id, rerun in (("again", True), ("once", False)):
        prep = bm.BatchJobPreparationTask(
            command_line=f"/bin/sh -c 'echo ran >> $AZ_BATCH_NODE_SHARED_DIR/{job_id}.txt'",
            rerun_on_node_reboot_after_success=rerun,
        )
        make_job(client, job_id, job_preparation_task=prep)
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="first", command_line="/bin/true"))
        wait_task_done(client, job_id, "first")
    shared = Path(emu.disk_root) / "pool1" / next(iter(client.list_nodes("pool1"))).id / "shared"
    emu.stop()

    again = start_emulator(folder=folder)
    try:
        client = client_for(again)
        for job_id in ("again", "once"):
            client.create_task(job_id, bm.BatchTaskCreateOptions(id="second", command_line="/bin/true"))
            wait_task_done(client, job_id, "second")
        assert (shared / "again.txt").read_text() == "ran\nran\n"  # rerunOnNodeRebootAfterSuccess
        assert (shared / "once.txt").read_text() == "ran\n"
    finally:
        again.stop()
