"""What a run's Batch tasks get from Blob Storage: URLs of their inputs, the config and the shared
files, and where their outputs and logs go.

Without [batch] node_identity every URL carries a SAS: read-only for what a task reads, create/write
only (the run's container) for what it writes. Each outlives the job's kill switch (max_wall_clock)
by SAS_MARGIN, since a task may wait in the queue that long, and the check here stops a run whose
SAS would not (a user's own SAS secret). With node_identity the URLs are plain and each resource
and output file names the identity: no token can expire and none is handed to a task.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from shardrun.core.compute import RunContext, TaskSpec
from shardrun.core.errors import UsageError
from shardrun.core.layout import app_key, log_key, split_key
from shardrun.core.spec import JobSpec
from shardrun.providers.azure.batch_monitor import call
from shardrun.providers.azure.batch_pieces import job_preparation, preparation_failure, task_cut
from shardrun.providers.azure.batch_tasks import (
    APP_DIR,
    CONFIG_DIR,
    INPUT_DIR,
    MOUNT_POINT,
    OUTPUT_DIR,
    JobTemplate,
    TaskFiles,
    blob_name,
    container_run_options,
    node_file_name,
    sas_expiry,
)
from shardrun.providers.azure.settings import BatchSection

SAS_MARGIN = 3600.0  # task URLs outlive the job's kill switch by this much
DELEGATION_LIMIT = 7 * 24 * 3600.0  # a user delegation SAS lasts at most 7 days


class RunFiles:
    """URLs for one run's tasks. `ctx.store` is the run's BlobStore."""

    def __init__(self, spec: JobSpec, settings: BatchSection, ctx: RunContext,
                 image: str | None) -> None:
        self.spec = spec
        self.settings = settings
        self.ctx = ctx
        self.store: Any = ctx.store
        self.image = image
        self.identity = settings.node_identity
        self.lifetime = settings.max_wall_clock + SAS_MARGIN
        self.by_reference: bool | None = None  # whether some task's piece goes by reference

    def url(self, key: str) -> str:
        """A read URL of a stored file: read-only SAS, or plain with node_identity."""
        if self.identity:
            namespace, name = split_key(key)
            return f"{self.store.conn.account_url}/{namespace}/{quote(name, safe='/')}"
        return str(self.store.read_url(key, self.lifetime))

    def output_container_url(self) -> str:
        if self.identity:
            return f"{self.store.conn.account_url}/{self.ctx.run_id}"
        return str(self.store.container_write_url(self.ctx.run_id, self.lifetime))

    def template(self) -> JobTemplate:
        ctx = self.ctx
        shared = []
        config_path = ""
        if ctx.config_key:
            config_path = f"{CONFIG_DIR}/{ctx.config_key.rsplit('/', 1)[-1]}"
            shared.append((config_path, self.url(ctx.config_key)))
        shared += [(k.rsplit("/", 1)[-1], self.url(k)) for k in ctx.file_keys]
        command = self._ship_programs(shared)
        options = container_run_options(list(self.spec.run.container_options),
                                        self.settings.storage_mode, ctx.run_id)
        template = JobTemplate(
            command=command, shared_files=tuple(shared), config_path=config_path,
            output_container_url=self.output_container_url(), env=dict(ctx.env),
            retries=ctx.retries, timeout=ctx.timeout, image=self.image, container_options=options,
            identity=self.identity, stdout_output=ctx.stdout_output,
        )
        self.check_expiry(template.output_container_url)
        return template

    def _ship_programs(self, shared: list[tuple[str, str]]) -> list[str] | None:
        """A command naming a file beside the job file (`python3 count.py`) gets that file on the
        node too, as on the local backend; in an image, the image has it."""
        if self.ctx.command is None:
            return None
        command = list(self.ctx.command)
        if self.image is not None:
            return command
        for i, arg in enumerate(command):
            path = self.spec.path(arg) if arg and "{" not in arg and not arg.startswith("-") else None
            if i == 0 or path is None or not path.is_file():
                continue
            key = app_key(self.ctx.run_id, path.name)
            if self.store.size(key) is None:
                self.store.put_file(key, path)
            rel = f"{APP_DIR}/{path.name}"
            shared.append((rel, self.url(key)))
            command[i] = rel
        return command

    def task_files(self, spec: TaskSpec, template: JobTemplate) -> TaskFiles:
        name = spec.input_key.rstrip("/").rsplit("/", 1)[-1]
        out_name = node_file_name(spec.output_key.rsplit("/", 1)[-1])
        logs = {s: blob_name(log_key(self.ctx.run_id, spec.task_id, spec.first_attempt, s))
                for s in ("stdout", "stderr")}
        if self.settings.storage_mode == "mount":
            return TaskFiles(inputs=(), input_path=f"{MOUNT_POINT}/{split_key(spec.input_key)[1]}",
                             output_path=f"{OUTPUT_DIR}/{out_name}", output_blob=blob_name(spec.output_key),
                             log_blobs=logs, output_copy=f"{MOUNT_POINT}/{blob_name(spec.output_key)}")
        # Without the task script (an image's ENTRYPOINT runs) nothing makes out/: use the wd.
        out_path = f"{OUTPUT_DIR}/{out_name}" if template.command else out_name
        cut = task_cut(spec, f"{INPUT_DIR}/{name}")
        if cut and not template.command:
            raise UsageError(f"{self.spec.source}: a piece by reference needs [app] command")
        if cut:  # the task cuts its piece from the sources the job preparation brought
            inputs: tuple[tuple[str, str], ...] = ()
        elif spec.input_key.endswith("/"):
            inputs = tuple((f"{INPUT_DIR}/{name}/{o.key[len(spec.input_key):]}", self.url(o.key))
                           for o in self.store.list(spec.input_key))
        else:
            inputs = ((f"{INPUT_DIR}/{name}", self.url(spec.input_key)),)
        return TaskFiles(inputs=inputs, input_path=f"{INPUT_DIR}/{name}",
                         output_path=out_path, output_blob=blob_name(spec.output_key),
                         log_blobs=logs, cut=cut)

    def preparation(self, tasks: Iterable[TaskSpec]) -> Any:
        """The job preparation that brings the run's sources to each node (None: not needed)."""
        return job_preparation(self.store, self.ctx.run_id, self.url, self.identity, tasks)

    def preparation_failure(self, client: Any, job_id: str,
                            tasks: Iterable[TaskSpec]) -> tuple[int, str | None]:
        """(requests made, why no task can start): asked while tasks wait and none runs, for a
        run whose pieces go by reference (a node whose preparation failed never runs them)."""
        if self.by_reference is None:
            self.by_reference = any(t.segments is not None for t in tasks)
        if not self.by_reference:
            return 0, None
        statuses = call(lambda: list(client.list_job_preparation_and_release_task_status(job_id)),
                        f"read the job preparation status of job {job_id}")
        return 1, preparation_failure(statuses)

    def mount_sas(self) -> str:
        """The SAS of the pool's blobfuse mount of the run's container (storage_mode = 'mount')."""
        return self.output_container_url().split("?", 1)[1]

    def check_expiry(self, url: str) -> None:
        """A SAS handed to tasks must outlive the job, which max_wall_clock ends: a task may wait
        in the queue that long before it reads its input."""
        if self.identity:
            return
        if self.store.conn.auth == "default_credential" and self.lifetime > DELEGATION_LIMIT:
            raise UsageError(f"{self.spec.source}: [batch] max_wall_clock plus an hour is longer "
                             "than the 7 days a user delegation SAS can last; shorten it, or use "
                             "[batch] node_identity")
        expires = sas_expiry(url)
        needed = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.settings.max_wall_clock)
        if expires is not None and expires < needed + dt.timedelta(seconds=SAS_MARGIN / 2):
            raise UsageError(
                f"{self.spec.source}: the storage SAS expires at {expires:%Y-%m-%d %H:%M} UTC, "
                f"before [batch] max_wall_clock could end the job ({needed:%Y-%m-%d %H:%M} UTC) "
                "with a margin: a task still queued then could not read its input. Use a SAS "
                "that lasts longer, an account key or an Azure login, or [batch] node_identity")
