"""The merge on the cluster ([merge] where = "cluster"): what batch.py adds to a job for it.

A run's job gets one more task, `merge`, that depends on every task of the job
(`dependsOn.taskIdRanges`; the job has `usesTaskDependencies`). It gets the run's outputs with one
resource file (the container's `outputs/` prefix), runs the built-in merger as a POSIX sh script
(merge_script.py) or the user's [merge] command, and uploads the merged result to
`layout.merged_key`. The client then downloads that one blob (batch_collect.py).

Task id ranges match integer task ids only, so a job made for a cluster-capable run numbers its
tasks: Batch task `5` is the ledger's `task-00005`. The job's metadata says so (TASK_NAMING); a
job without it (submitted before) keeps the ledger's ids, and its merge runs in a job of its own.
Display names carry the ledger id and the attempt, as before.

Failed tasks: the merge task depends on them too. With [run] allow_failures every task says
`dependencyAction: satisfy` for any exit (exitConditions.default, which also covers start and
upload failures), so the merge runs over the outputs that exist once every task has ended; without
it a failed task blocks the merge (the service's default), the run ends failed, and the job is
deleted with the blocked merge task in it.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Iterable
from typing import Any

from shardrun.core.layout import app_key, log_key, merged_key
from shardrun.core.plugins import render_argv
from shardrun.core.spec import JobSpec
from shardrun.providers.azure.batch_files import RunFiles
from shardrun.providers.azure.batch_monitor import call_unless
from shardrun.providers.azure.batch_tasks import TASK_NAMING, JobTemplate, blob_name
from shardrun.providers.azure.merge_script import COMMAND_DIR, MERGE_SCRIPT, OUTPUTS, RESULT

MERGE_TASK = "merge"
SCRIPT_NAME = "shardrun-merge.sh"
NUMBERED = "number"  # TASK_NAMING's value on jobs whose Batch task ids are the ledger ids' numbers
_LEDGER_ID = re.compile(r"task-(\d+)")


def numbered(job: Any) -> bool:
    """Whether a job's Batch task ids are numbers (its metadata says so)."""
    return {m.name: m.value for m in job.metadata or []}.get(TASK_NAMING) == NUMBERED


def batch_task_id(ledger_id: str, numbers: bool) -> str:
    """The Batch task id of a ledger task: `task-00005` -> `5` in a numbered job."""
    m = _LEDGER_ID.fullmatch(ledger_id) if numbers else None
    return str(int(m.group(1))) if m else ledger_id


def dependencies(batch_ids: Iterable[str]) -> Any:
    """dependsOn for these tasks: runs of numbers as ranges, anything else by id."""
    from azure.batch import models as bm

    ids = list(batch_ids)
    numbers = sorted(int(i) for i in ids if i.isdigit() and str(int(i)) == i)
    others = sorted(i for i in ids if not (i.isdigit() and str(int(i)) == i))
    ranges: list[Any] = []
    for n in numbers:
        if ranges and ranges[-1].end == n - 1:
            ranges[-1].end = n
        elif not ranges or ranges[-1].end != n:
            ranges.append(bm.BatchTaskIdRange(start=n, end=n))
    return bm.BatchTaskDependencies(task_ids=others or None, task_id_ranges=ranges or None)


def tolerate_failure(task: Any) -> None:
    """[run] allow_failures: however the task ends, the merge that depends on it may run. `task` is
    a REST body or an SDK model (both are mappings of the REST names)."""
    task["exitConditions"] = {"default": {"dependencyAction": "satisfy"}}


def merges_on_cluster(spec: JobSpec) -> bool:
    return spec.merge.where == "cluster"


def merge_follows(spec: JobSpec, failed_any: bool, unreported: set[str]) -> bool:
    """Whether the job's merge task will run once its tasks have ended, so the backend must leave
    the job and pool to the cluster merge: every task reported, and none failed unless allowed."""
    return merges_on_cluster(spec) and not unreported and (not failed_any or spec.run.allow_failures)


def script_args(spec: JobSpec) -> list[str]:
    """The script's arguments after its name: the method and the result, then (a [merge] command)
    whether it writes {output} itself and its argv with the placeholders rendered."""
    merge = spec.merge
    if merge.command is None:
        return [merge.kind, RESULT]
    writes_itself = any("{output}" in arg for arg in merge.command)
    argv = render_argv(merge.command, {"outdir": COMMAND_DIR, "output": RESULT})
    return ["command", RESULT, "1" if writes_itself else "", *argv]


def _ship_merge_programs(spec: JobSpec, files: RunFiles, run_id: str,
                         image: str | None) -> tuple[list[str], list[tuple[str, str]]]:
    """A [merge] command naming a file beside the job file (`python3 recombine.py`) gets it on the
    node, as [app] command does (in an image, the image has it)."""
    args = script_args(spec)
    shipped: list[tuple[str, str]] = []
    if spec.merge.command is None or image is not None:
        return args, shipped
    for i, arg in enumerate(args[3:], 3):
        path = spec.path(arg) if arg and "{" not in arg and not arg.startswith("-") else None
        if i == 3 or path is None or not path.is_file():
            continue
        key = app_key(run_id, f"merge-{path.name}")
        if files.store.size(key) is None:
            files.store.put_file(key, path)
        shipped.append((f"merge-app/{path.name}", files.url(key)))
        args[i] = f"merge-app/{path.name}"
    return args, shipped


def outputs_url(files: RunFiles, run_id: str) -> str:
    """A read and list URL of the run's container (the merge reads every output): a service SAS,
    the user's own SAS, or a plain URL with [batch] node_identity."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    store, conn = files.store, files.store.conn
    url = f"{conn.account_url}/{run_id}"
    if files.identity:
        return url
    now = dt.datetime.now(dt.UTC)
    sas: dict[str, Any] = {"permission": ContainerSasPermissions(read=True, list=True),
                           "start": now - dt.timedelta(minutes=5),
                           "expiry": now + dt.timedelta(seconds=files.lifetime)}
    if conn.account_key is not None:
        token = generate_container_sas(conn.account_name, run_id,
                                       account_key=conn.account_key.reveal(), **sas)
    elif conn.auth == "default_credential":
        token = generate_container_sas(conn.account_name, run_id,
                                       user_delegation_key=store._delegation_key(files.lifetime),
                                       **sas)
    elif conn.sas_token is not None:
        token = conn.sas_token.reveal().lstrip("?")  # the user's SAS must allow read and list
    else:
        raise ValueError("cannot make a container SAS without an account key or an Azure login")
    return f"{url}?{token}"


def add_merge_task(client: Any, job_id: str, task: Any) -> None:
    """Add the merge task after the tasks it depends on exist; one added before (a create whose
    answer was lost, a client that died) is the same task."""
    call_unless(lambda: client.create_task(job_id, task), f"add the merge task to job {job_id}",
                ("TaskExists",))


def merge_task(spec: JobSpec, files: RunFiles, template: JobTemplate, run_id: str,
               depends_on: Any | None) -> Any:
    """The merge task: the script and the outputs as resource files, the result and logs as
    output files, in the tasks' image when they have one. Never retried by Batch: a merge that
    fails is retried with `shardrun merge`."""
    from azure.batch import models as bm

    script = app_key(run_id, SCRIPT_NAME)
    files.store.put_bytes(script, MERGE_SCRIPT.encode())
    args, shipped = _ship_merge_programs(spec, files, run_id, template.image)
    identity = (bm.BatchNodeIdentityReference(resource_id=template.identity)
                if template.identity else None)
    resources = [
        bm.ResourceFile(http_url=files.url(script), file_path=SCRIPT_NAME, identity_reference=identity),
        bm.ResourceFile(storage_container_url=outputs_url(files, run_id), blob_prefix="outputs/",
                        file_path=OUTPUTS.split("/")[0], identity_reference=identity),
        *(bm.ResourceFile(http_url=url, file_path=path, identity_reference=identity)
          for path, url in shipped),
    ]

    def output(pattern: str, key: str, condition: Any) -> Any:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(
                container_url=template.output_container_url, path=blob_name(key),
                identity_reference=identity)),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition))

    outputs = [output(RESULT, merged_key(run_id), bm.OutputFileUploadCondition.TASK_SUCCESS)]
    outputs += [output(f"../{s}.txt", log_key(run_id, MERGE_TASK, 1, s),
                       bm.OutputFileUploadCondition.TASK_COMPLETION) for s in ("stdout", "stderr")]
    container = None
    if template.image is not None:
        container = bm.BatchTaskContainerSettings(
            image_name=template.image,
            container_run_options=shlex.join(template.container_options) or None,
            working_directory=bm.ContainerWorkingDirectory.TASK_WORKING_DIRECTORY)
    return bm.BatchTaskCreateOptions(
        id=MERGE_TASK, display_name=MERGE_TASK,
        command_line=shlex.join(["/bin/sh", SCRIPT_NAME, *args]),
        resource_files=resources, output_files=outputs, depends_on=depends_on,
        constraints=bm.BatchTaskConstraints(max_task_retry_count=0),
        container_settings=container,
    )
