"""TaskBodies makes each task's REST body by hand: it must be what the SDK's models would send."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from typing import Any

import pytest

from shardrun.providers.azure.batch_tasks import (
    JobTemplate,
    TaskBodies,
    TaskFiles,
    build_task,
    command_line,
    task_environment,
)


def sdk_task(template: JobTemplate, run_id: str, task_id: str, attempt: int, files: TaskFiles) -> Any:
    """The task built from SDK models, field by field (how build_task made it before TaskBodies)."""
    from azure.batch import models as bm

    identity = (bm.BatchNodeIdentityReference(resource_id=template.identity)
                if template.identity else None)

    def output(pattern: str, blob: str, condition: Any) -> Any:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(
                container_url=template.output_container_url, path=blob, identity_reference=identity)),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition))

    outputs = [] if files.output_copy else [
        output(files.output_path, files.output_blob, bm.OutputFileUploadCondition.TASK_SUCCESS)]
    outputs += [output(f"../{stream}.txt", blob, bm.OutputFileUploadCondition.TASK_COMPLETION)
                for stream, blob in files.log_blobs.items()]
    env = task_environment(template, task_id, run_id, attempt, files)
    return bm.BatchTaskCreateOptions(
        id=task_id,
        command_line=command_line(template.command, files, template.config_path, template.stdout_output),
        resource_files=[bm.ResourceFile(http_url=url, file_path=path, identity_reference=identity)
                        for path, url in (*files.inputs, *template.shared_files)],
        output_files=outputs,
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in sorted(env.items())],
        constraints=bm.BatchTaskConstraints(
            max_task_retry_count=template.retries,
            max_wall_clock_time=dt.timedelta(seconds=template.timeout) if template.timeout else None),
        container_settings=None if template.image is None else bm.BatchTaskContainerSettings(
            image_name=template.image, container_run_options=shlex.join(template.container_options) or None,
            working_directory=bm.ContainerWorkingDirectory.TASK_WORKING_DIRECTORY),
    )


FILES = TaskFiles(inputs=(("in/piece-000001.txt", "https://a/in?sig=x"),), input_path="in/piece-000001.txt",
                  output_path="out/piece-000001.txt", output_blob="outputs/task-00001/piece-000001.txt",
                  log_blobs={"stdout": "logs/task-00001/1/stdout.txt",
                             "stderr": "logs/task-00001/1/stderr.txt"})
BASE = dict(command=["app", "-i", "{input}", "-o", "{output}"], shared_files=(("cfg/c.json", "https://a/c"),),
            config_path="cfg/c.json", output_container_url="https://a/run?sig=w", env={"A": "1"})


@pytest.mark.parametrize("template, files", [
    (JobTemplate(**BASE), FILES),
    (JobTemplate(**BASE, retries=0, timeout=5400.5, image="reg/app:1",
                 container_options=("--rm", "-e X=1"), identity="/sub/id", stdout_output=True), FILES),
    (JobTemplate(**{**BASE, "command": None}), TaskFiles(
        inputs=(), input_path="in/x", output_path="out/x", output_blob="o", log_blobs={},
        output_copy="/mnt/shardrun/o")),
])
def test_a_task_body_is_what_the_sdk_models_send(template: JobTemplate, files: TaskFiles) -> None:
    body = TaskBodies(template).body("run-1", "task-00001", 2, files)
    expected = sdk_task(template, "run-1", "task-00001", 2, files).as_dict()
    assert json.loads(json.dumps(body)) == expected
    assert build_task(template, "run-1", "task-00001", 2, files).as_dict() == expected
