"""Container tasks in podman: the node root mapped in at the same path, the task's variables set, the
working directory rule, containerRunOptions, and an empty command line running the ENTRYPOINT."""

from __future__ import annotations

from pathlib import Path

from azure.batch import models as bm

from shardrun.images.engine import Engine

from .conftest import client_for, make_job, make_pool, start_emulator, wait_task_done


def test_container_tasks_run_in_podman(podman: Engine, test_image: str, tmp_path: Path) -> None:
    emu = start_emulator(container_runtime="podman")
    try:
        client = client_for(emu)
        make_pool(client, containers=True, images=(test_image,))
        make_job(client)
        shell = bm.BatchTaskContainerSettings(
            image_name=test_image, container_run_options="--entrypoint /bin/sh"
        )
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="inside",
                container_settings=shell,
                command_line="-c 'echo $AZ_BATCH_TASK_ID $MINE; pwd; test -d $AZ_BATCH_NODE_SHARED_DIR && echo shared'",
                environment_settings=[bm.EnvironmentSetting(name="MINE", value="mine")],
            ),
        )
        default_wd = bm.BatchTaskContainerSettings(
            image_name=test_image,
            container_run_options="--entrypoint /bin/sh",
            working_directory="containerImageDefault",
        )
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(id="imagewd", container_settings=default_wd, command_line="-c pwd"),
        )
        # An empty command line runs the image's ENTRYPOINT (upper.sh: INPUT_PATH -> OUTPUT_PATH).
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="entry",
                command_line="",
                container_settings=bm.BatchTaskContainerSettings(image_name=test_image),
                resource_files=[],
                environment_settings=[
                    bm.EnvironmentSetting(name="INPUT_PATH", value="/etc/hostname"),
                    bm.EnvironmentSetting(name="OUTPUT_PATH", value="/dev/stdout"),
                ],
            ),
        )
        inside = wait_task_done(client, "job1", "inside", timeout=120)
        assert inside.execution_info.result == "success", inside.execution_info.failure_info
        assert inside.execution_info.container_info.container_id
        out = b"".join(client.download_task_file("job1", "inside", "stdout.txt")).decode().splitlines()
        assert out[0] == "inside mine"
        assert out[1].endswith("/workitems/job1/job-1/inside/wd") and out[2] == "shared"
        assert wait_task_done(client, "job1", "imagewd", timeout=120).execution_info.result == "success"
        assert b"".join(client.download_task_file("job1", "imagewd", "stdout.txt")) == b"/\n"
        entry = wait_task_done(client, "job1", "entry", timeout=120)
        assert entry.execution_info.result == "success"
        assert b"".join(client.download_task_file("job1", "entry", "stdout.txt")).strip()
    finally:
        emu.stop()


def test_stopping_a_container_task_removes_its_container(podman: Engine, test_image: str) -> None:
    emu = start_emulator(container_runtime="podman")
    try:
        client = client_for(emu)
        make_pool(client, containers=True, images=(test_image,))
        make_job(client)
        settings = bm.BatchTaskContainerSettings(
            image_name=test_image, container_run_options="--entrypoint /bin/sh"
        )
        client.create_task(
            "job1",
            bm.BatchTaskCreateOptions(
                id="slow",
                container_settings=settings,
                command_line="-c 'sleep 120'",
                constraints=bm.BatchTaskConstraints(max_wall_clock_time="PT2S"),
            ),
        )
        info = wait_task_done(client, "job1", "slow", timeout=60).execution_info
        assert info.failure_info.code == "MaxWallClockTimeExceeded"
        name = info.container_info.container_id
        listed = podman.call("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert name not in listed
    finally:
        emu.stop()
