"""The client's side of the cluster merge (core.compute.ClusterMerge on Azure Batch): wait for the
run's merge task, say why it failed, and release the run's jobs and pool once it has ended.

The merge task is normally in the job where the run's last tasks ran (batch_merge.py). When that
job has none usable (a job submitted before numbered task ids, one whose merge task is blocked by a
failure that [run] allow_failures now tolerates, or none at all: `shardrun merge` after the job was
deleted), the merge task runs in a job of its own, with no dependencies: every task has ended.
A client stopped while it waits leaves it running; the next `shardrun run` waits again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shardrun.core.compute import RunContext
from shardrun.core.errors import ShardrunError
from shardrun.core.layout import log_key
from shardrun.core.plugins import tail
from shardrun.core.spec import JobSpec
from shardrun.providers.azure.batch import AzureBatchBackend
from shardrun.providers.azure.batch_account import end_job_with_its_tasks
from shardrun.providers.azure.batch_merge import MERGE_TASK, add_merge_task, merge_task
from shardrun.providers.azure.batch_monitor import call, call_unless, explain, task_reason

TAIL_LINES = 5


class BatchMerge:
    """ClusterMerge for the azure-batch backend. Opens nothing until `merge` is called."""

    def __init__(self, spec: JobSpec, image_and_registry: Callable[[], tuple[str | None, Any]],
                 client: Any = None) -> None:
        self.spec = spec
        self.image_and_registry = image_and_registry  # looked up only when the merge runs
        self.image: str | None = None
        self.client = client
        self.backend: AzureBatchBackend | None = None
        self.say: Callable[[str], None] = lambda note: None
        self.submitted = False  # by this client (else it re-attached to one)

    def merge(self, ctx: RunContext, result_key: str, say: Callable[[str], None]) -> str | None:
        self.image, registry = self.image_and_registry()
        backend = AzureBatchBackend(self.spec, client=self.client, image=self.image,
                                    registry=registry)
        self.backend, self.say = backend, say
        backend.start(ctx)  # the run's live pool, if the ledger has one; else _new_job makes one
        task = self._merge_task(backend)
        if task is None:
            backend._new_job()
            self._add(backend, None)
        elif not self.submitted:  # submitted with the tasks, or by a client that stopped
            say(f"waiting for the merge task of Batch job {backend.job_id}")
        task = self._wait(backend)
        if str(task.execution_info.result).lower().endswith("success"):
            return None
        return self._reason(ctx, task)

    def close(self) -> None:
        """Delete the run's jobs and (unless kept) its pool, by exact id."""
        backend, self.backend = self.backend, None
        if backend is None or backend.ctx is None:
            return
        try:
            backend.release()
        except ShardrunError as err:  # the result is safe; say what is left to delete
            self.say(f"{err}; delete it with: shardrun cleanup {backend.ctx.run_id}")

    # -- steps ----------------------------------------------------------------------------------
    def _get(self, backend: AzureBatchBackend) -> Any | None:
        job_id = backend.job_id
        assert job_id is not None
        return call_unless(lambda: backend.client.get_task(job_id, MERGE_TASK),
                           f"read the merge task of job {job_id}", ("TaskNotFound",))

    def _merge_task(self, backend: AzureBatchBackend) -> Any | None:
        """The live job's merge task when it can still give the result, else None."""
        if backend.job_id is None:
            return None
        task = self._get(backend)
        if task is None:
            if backend.job_active and backend.numbered:
                self._add(backend, None)  # every task of the job has ended
                return self._get(backend)
            return None
        if str(task.state).lower().endswith("active") and self._blocked(backend):
            return None  # a failed task blocks it; allow_failures now lets the merge go on
        return task

    def _blocked(self, backend: AzureBatchBackend) -> bool:
        job_id = backend.job_id
        counts = call(lambda: backend.client.get_job_task_counts(job_id),
                      f"read the task counts of job {job_id}").task_counts
        return bool(counts.failed) and counts.active == 1 and counts.running == 0

    def _add(self, backend: AzureBatchBackend, depends_on: Any) -> None:

        assert backend.job_id is not None and backend.files is not None
        assert backend.template is not None and backend.ctx is not None
        add_merge_task(backend.client, backend.job_id, merge_task(
            self.spec, backend.files, backend.template, backend.ctx.run_id, depends_on))
        self.submitted = True
        self.say(f"merge task submitted to Batch job {backend.job_id}")
        end_job_with_its_tasks(backend.client, backend.job_id)

    def _wait(self, backend: AzureBatchBackend) -> Any:
        while True:
            task = self._get(backend)
            if task is None:
                raise explain(RuntimeError("the merge task is gone"),
                              f"read the merge task of job {backend.job_id}")
            if str(task.state).lower().endswith("completed"):
                return task
            time.sleep(backend.settings.poll_interval)

    def _reason(self, ctx: RunContext, task: Any) -> str:
        reason = task_reason(task.execution_info, self.image)
        try:
            stderr = ctx.store.get_bytes(log_key(ctx.run_id, MERGE_TASK, 1, "stderr"))
        except FileNotFoundError:
            stderr = b""
        if stderr.strip():
            reason += f": {tail(stderr, TAIL_LINES)}"
        return reason
