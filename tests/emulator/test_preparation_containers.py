"""A job preparation task on a container pool, as pieces by reference use it: the preparation runs on
the node (no containerSettings: the spec makes them optional for it, unlike a task's), its resource
files land in its working folder, and the job's container tasks see that folder through
AZ_BATCH_JOB_PREP_WORKING_DIR (the node root is mapped into the container, with the variables)."""

from __future__ import annotations

import shlex
import uuid

from azure.batch import models as bm

from shardrun.images.engine import Engine
from shardrun.providers.azure.batch_pieces import CUT_SCRIPT, SOURCES_DIR, cut_args

from ..fixtures.azurite import Azurite
from .conftest import client_for, make_job, make_pool, start_emulator, wait_task_done
from .test_files_state import container_url
from .test_preparation import done_prep


def test_container_tasks_cut_pieces_from_the_preparations_files(
    podman: Engine, test_image: str, azurite: Azurite,
) -> None:
    run = uuid.uuid4().hex[:8]
    service, url = container_url(azurite, f"prep-{run}", read=True, list=True)
    service.get_container_client(f"prep-{run}").upload_blob("src", b"0123456789\nabc")
    blob = url.replace(f"/prep-{run}?", f"/prep-{run}/src?")
    emu = start_emulator(container_runtime="podman")
    try:
        client = client_for(emu)
        make_pool(client, containers=True, images=(test_image,))
        prep = bm.BatchJobPreparationTask(
            command_line="/bin/sh -c true",
            resource_files=[bm.ResourceFile(http_url=blob, file_path=f"{SOURCES_DIR}/0")],
        )
        make_job(client, job_preparation_task=prep)
        segments = [(0, 3, 8), b"\n", (0, 11, 3), b"]"]
        argv = ["-c", CUT_SCRIPT + 'cat "$AZ_BATCH_TASK_WORKING_DIR/in/p"', "shardrun",
                *cut_args(segments, "in/p")]
        client.create_task("job1", bm.BatchTaskCreateOptions(
            id="cut", command_line=shlex.join(argv),
            container_settings=bm.BatchTaskContainerSettings(
                image_name=test_image, container_run_options="--entrypoint /bin/sh")))
        task = wait_task_done(client, "job1", "cut", timeout=120)
        info = done_prep(client)
        assert info.result == "success" and task.execution_info.start_time >= info.end_time
        assert task.execution_info.result == "success", task.execution_info.failure_info
        assert task.execution_info.container_info.container_id  # it ran in the container
        assert b"".join(client.download_task_file("job1", "cut", "stdout.txt")) == b"3456789\n\nabc]"
    finally:
        emu.stop()
