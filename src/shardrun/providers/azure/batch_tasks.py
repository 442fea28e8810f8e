"""What shardrun asks Azure Batch for: the pool, the job and each task, as SDK models.

Plain functions over plain data, so they are tested without a service. The task contract on a node
(docs/task-contract.md) comes from TASK_SCRIPT, a constant shell script; the job's values reach it
as positional arguments, quoted with shlex.join, never pasted into the script.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shardrun.core.layout import split_key
from shardrun.core.plugins import render_argv
from shardrun.providers.azure.batch_pieces import CUT_SCRIPT
from shardrun.providers.azure.settings import BatchSection

# Exit code of TASK_SCRIPT when the app exited 0 but wrote no output.
NO_OUTPUT_EXIT = 86
RUN_METADATA = "shardrun.run"  # on every pool and job shardrun creates: the run it belongs to
TASK_NAMING = "shardrun.taskids"  # on jobs whose Batch task ids are numbers (batch_merge.py)
INPUT_DIR, OUTPUT_DIR, CONFIG_DIR, APP_DIR = "in", "out", "cfg", "app"

# Runs in the task's working directory: makes the contract's paths absolute, runs the app (its argv
# follows the four paths and a flag: non-empty sends the app's stdout to OUTPUT_PATH, streamed), and
# fails the attempt when the app exits 0 without an output. With a
# mount, the output is copied to the mount only after success, so a stored output always means done.
TASK_SCRIPT = (
    'wd="${AZ_BATCH_TASK_WORKING_DIR:-$PWD}"; mkdir -p "$wd/' + OUTPUT_DIR + '" || exit 1; '
    'case "$1" in /*) in="$1";; *) in="$wd/$1";; esac; '
    'export INPUT_PATH="$in" OUTPUT_PATH="$wd/$2" CONFIG_PATH="${3:+$wd/$3}"; keep="$4"; '
    'to_output="$5"; shift 5; '
    'if [ -n "$to_output" ]; then "$@" > "$OUTPUT_PATH"; else "$@"; fi; rc=$?; '
    '[ "$rc" -eq 0 ] || exit "$rc"; '
    'if [ ! -e "$OUTPUT_PATH" ]; then '
    'echo "shardrun: the app exited 0 but wrote nothing at OUTPUT_PATH ($OUTPUT_PATH)" >&2; '
    f"exit {NO_OUTPUT_EXIT}; fi; "
    '[ -z "$keep" ] || { mkdir -p "$(dirname "$keep")" && cp "$OUTPUT_PATH" "$keep.part" '
    '&& mv "$keep.part" "$keep"; }'
)

# storage_mode = "mount" (the classic guide's way): the pool mounts the run's container with
# blobfuse under $AZ_BATCH_NODE_MOUNTS_DIR, and each container gets it at MOUNT_POINT. Batch expands
# the variable in the run options; the flags are a list, joined by shlex.join, never pasted.
MOUNT_POINT = "/mnt/shardrun"


@dataclass(frozen=True)
class TaskFiles:
    """Where one task's files are: (relative path in the working dir, read URL) pairs, and the
    blob names its output and logs go to, in the run's container."""

    inputs: tuple[tuple[str, str], ...]
    input_path: str
    output_path: str
    output_blob: str
    log_blobs: dict[str, str]
    output_copy: str = ""  # with a mount: where the script copies the output after success
    cut: tuple[str, ...] = ()  # a piece by reference: CUT_SCRIPT's arguments (batch_pieces.py)


@dataclass(frozen=True)
class JobTemplate:
    """What every task of a run shares."""

    command: list[str] | None  # app argv, placeholders already rendered; None: image ENTRYPOINT
    shared_files: tuple[tuple[str, str], ...]  # (relative path, read URL): config, [app] files
    config_path: str  # relative, '' when there is none
    output_container_url: str  # create/write-only SAS of the run's container (plain with identity)
    env: dict[str, str] = field(default_factory=dict)
    retries: int = 3
    timeout: float | None = None
    image: str | None = None
    container_options: tuple[str, ...] = ()
    registry_server: str | None = None
    # [batch] node_identity: the URLs are plain and the node signs in as this managed identity.
    identity: str | None = None
    stdout_output: bool = False  # [app] stdout = "output"


def command_line(command: Sequence[str] | None, files: TaskFiles, config_path: str,
                 stdout_output: bool = False) -> str:
    """The task's command line. Batch splits it like a shell but runs no shell, hence /bin/sh -c.
    Placeholders become paths relative to the working directory, where the app starts."""
    if command is None:
        return ""  # an empty command line runs the image's ENTRYPOINT
    argv = render_argv(command, {"input": files.input_path, "output": files.output_path,
                                 "config": config_path})
    return shlex.join(["/bin/sh", "-c", (CUT_SCRIPT if files.cut else "") + TASK_SCRIPT, "shardrun",
                       *files.cut, files.input_path,
                       files.output_path, config_path, files.output_copy,
                       "1" if stdout_output else "", *argv])


def task_environment(template: JobTemplate, task_id: str, run_id: str, attempt: int,
                     files: TaskFiles) -> dict[str, str]:
    env = dict(template.env)
    env.update({"SHARDRUN_RUN_ID": run_id, "SHARDRUN_TASK_ID": task_id,
                "SHARDRUN_ATTEMPT": str(attempt)})
    if template.command is None:
        # No script runs before an ENTRYPOINT, so the paths stay relative to the working directory.
        env.update({"INPUT_PATH": files.input_path, "OUTPUT_PATH": files.output_path,
                    "CONFIG_PATH": template.config_path})
    return env


class TaskBodies:
    """Each task as the REST body Batch takes (a plain dict). What every task of a run shares is
    made once, by the SDK's own models and serializer; each task adds only its own values. Building
    ~15 SDK models per task cost the client 0.37 ms a task, a dict about 0.06 (bench/scale.py)."""

    def __init__(self, template: JobTemplate) -> None:
        from azure.batch import models as bm

        self.template = template
        constants = bm.BatchTaskCreateOptions(
            id="-", command_line="",
            constraints=bm.BatchTaskConstraints(
                max_task_retry_count=template.retries,
                max_wall_clock_time=dt.timedelta(seconds=template.timeout) if template.timeout else None),
            container_settings=None if template.image is None else bm.BatchTaskContainerSettings(
                image_name=template.image,
                container_run_options=shlex.join(template.container_options) or None,
                working_directory=bm.ContainerWorkingDirectory.TASK_WORKING_DIRECTORY),
        ).as_dict()
        self.constraints = constants["constraints"]
        self.container = constants.get("containerSettings")
        self.identity = {"resourceId": template.identity} if template.identity else None
        self.shared = [self._resource(path, url) for path, url in template.shared_files]

    def _resource(self, path: str, url: str) -> dict[str, Any]:
        body: dict[str, Any] = {"httpUrl": url, "filePath": path}
        if self.identity:
            body["identityReference"] = self.identity
        return body

    def _output(self, pattern: str, blob: str, condition: str) -> dict[str, Any]:
        container: dict[str, Any] = {"containerUrl": self.template.output_container_url, "path": blob}
        if self.identity:
            container["identityReference"] = self.identity
        return {"filePattern": pattern, "destination": {"container": container},
                "uploadOptions": {"uploadCondition": condition}}

    def body(self, run_id: str, task_id: str, attempt: int, files: TaskFiles) -> dict[str, Any]:
        template = self.template
        outputs = [] if files.output_copy else [
            self._output(files.output_path, files.output_blob, "tasksuccess")]
        outputs += [self._output(f"../{stream}.txt", blob, "taskcompletion")
                    for stream, blob in files.log_blobs.items()]
        env = task_environment(template, task_id, run_id, attempt, files)
        body: dict[str, Any] = {
            "id": task_id,
            "commandLine": command_line(template.command, files, template.config_path,
                                        template.stdout_output),
            "resourceFiles": [*(self._resource(path, url) for path, url in files.inputs), *self.shared],
            "outputFiles": outputs,
            "environmentSettings": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "constraints": self.constraints,
        }
        if self.container is not None:
            body["containerSettings"] = self.container
        return body


def build_task(template: JobTemplate, run_id: str, task_id: str, attempt: int, files: TaskFiles) -> Any:
    """The task as the SDK's model (the same body TaskBodies makes)."""
    from azure.batch import models as bm

    return bm.BatchTaskCreateOptions(TaskBodies(template).body(run_id, task_id, attempt, files))


def sas_expiry(url: str) -> dt.datetime | None:
    """When a SAS URL stops working (its `se`), or None for a URL without one."""
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(url).query).get("se")
    if not values:
        return None
    when = dt.datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# What a Batch output file pattern reads as more than a name: wildcards (`*`, `?`, `[`; a pattern
# with one names a blob folder, not the blob) and `$NAME`, which the node expands; a backslash, to
# be safe. An output's file on the node never holds them (its blob keeps its name).
_PATTERN_CHARS = re.compile(r"[*?\[$\\]")


def node_file_name(name: str) -> str:
    """An output's file name on the node: its name with the pattern characters made `_`."""
    return _PATTERN_CHARS.sub("_", name)


def blob_name(key: str) -> str:
    """A store key's name inside the run's container."""
    return split_key(key)[1]


def mount_name(run_id: str) -> str:
    return f"shardrun-{run_id}"


def container_run_options(options: Sequence[str], storage_mode: str, run_id: str) -> tuple[str, ...]:
    """The container flags: the job's (already allow-listed) options, plus the mount's volume."""
    out = list(options)
    if storage_mode == "mount":
        out += ["--volume", f"$AZ_BATCH_NODE_MOUNTS_DIR/{mount_name(run_id)}:{MOUNT_POINT}"]
    return tuple(out)


def mount_configuration(account_name: str, run_id: str, sas: str) -> list[Any]:
    """The pool's blobfuse mount of the run's container (storage_mode = "mount")."""
    from azure.batch import models as bm

    return [bm.MountConfiguration(azure_blob_file_system_configuration=bm.AzureBlobFileSystemConfiguration(
        account_name=account_name, container_name=run_id, sas_key=sas,
        relative_mount_path=mount_name(run_id)))]


def autoscale_formula(settings: BatchSection) -> str:
    """Nodes follow the pending tasks (as in the classic guide), up to max_nodes; a node leaves only
    when its tasks are done (taskcompletion), so a scale-down never kills work."""
    target = "$TargetLowPriorityNodes" if settings.autoscale_spot else "$TargetDedicatedNodes"
    other = "$TargetDedicatedNodes" if settings.autoscale_spot else "$TargetLowPriorityNodes"
    slots = settings.task_slots_per_node
    pending = "max(0, $PendingTasks.GetSample(1))"
    return (
        f"{target} = min({settings.max_nodes}, ({pending} + {slots - 1}) / {slots});\n"
        f"{other} = 0;\n"
        "$NodeDeallocationOption = taskcompletion;\n"
    )


def build_pool(settings: BatchSection, pool_id: str, run_id: str, image: str | None,
               registry: Any | None, mounts: list[Any] | None = None) -> Any:
    """The run's pool: container-enabled when the job has an image, autoscaled or fixed."""
    from azure.batch import models as bm

    container = None
    if image is not None:
        registries = None
        if registry is not None and registry.username and registry.password is not None:
            registries = [bm.ContainerRegistryReference(
                registry_server=registry.host, username=registry.username,
                password=registry.password.reveal())]
        container = bm.BatchContainerConfiguration(
            type=bm.ContainerType.DOCKER_COMPATIBLE, container_image_names=[image],
            container_registries=registries)
    vm = bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(
            publisher=settings.image_publisher, offer=settings.image_offer, sku=settings.image_sku,
            version=settings.image_version),
        node_agent_sku_id=settings.node_agent_sku,
        container_configuration=container,
    )
    scale: dict[str, Any]
    if settings.autoscale:
        scale = {"enable_auto_scale": True, "auto_scale_formula": autoscale_formula(settings),
                 "auto_scale_evaluation_interval": dt.timedelta(seconds=settings.autoscale_interval)}
    else:
        scale = {"target_dedicated_nodes": settings.dedicated_nodes,
                 "target_low_priority_nodes": settings.spot_nodes}
    return bm.BatchPoolCreateOptions(
        id=pool_id, vm_size=settings.vm_size, virtual_machine_configuration=vm,
        task_slots_per_node=settings.task_slots_per_node,
        mount_configuration=mounts,
        metadata=[bm.BatchMetadataItem(name=RUN_METADATA, value=run_id)],
        **scale,
    )


def build_job(job_id: str, pool_id: str, run_id: str, settings: BatchSection, retries: int) -> Any:
    """Created with noaction: a terminatejob job with no tasks yet would complete at once. Its
    tasks may depend on each other (the cluster merge's task), so their ids are numbers, and the
    metadata says so to a client that re-attaches."""
    from azure.batch import models as bm

    return bm.BatchJobCreateOptions(
        id=job_id,
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.NO_ACTION,
        uses_task_dependencies=True,
        constraints=bm.BatchJobConstraints(
            max_wall_clock_time=dt.timedelta(seconds=settings.max_wall_clock),
            max_task_retry_count=retries),
        metadata=[bm.BatchMetadataItem(name=RUN_METADATA, value=run_id),
                  bm.BatchMetadataItem(name=TASK_NAMING, value="number")],
    )
