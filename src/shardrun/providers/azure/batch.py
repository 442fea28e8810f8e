"""The Azure Batch backend: a run's tasks on a Batch pool, with inputs and outputs in Blob Storage.

Flow (docs/azure.md): preflight, then (only when tasks need it) pool and job, tasks in bulk, the job
switched to terminatejob, polls that never list every task, and at the end the job and pool deleted
by exact id. Batch retries failed attempts on its own (maxTaskRetryCount), so a run goes on while the
client is away: Ctrl-C detaches, and the next `shardrun run` re-attaches to the recorded job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

from shardrun.core.compute import AttemptEvent, RunContext, TaskSpec
from shardrun.core.errors import ShardrunError, UsageError
from shardrun.core.layout import log_key
from shardrun.core.spec import JobSpec
from shardrun.providers.azure import batch_merge as merging
from shardrun.providers.azure.batch_account import (
    JOB,
    POOL,
    check_identity,
    create_owned,
    delete_job,
    delete_pool,
    end_job_with_its_tasks,
    open_batch_client,
    pool_state,
    preflight,
)
from shardrun.providers.azure.batch_files import RunFiles
from shardrun.providers.azure.batch_listing import (
    COMPLETED_SELECT,
    TaskRecord,
    harvest,
    list_task_pages,
    parse_time,
    submitted_attempt,
    task_record,
)
from shardrun.providers.azure.batch_monitor import (
    OVERLAP,
    BatchError,
    PoolHealth,
    call,
    call_unless,
    explain,
    task_events,
)
from shardrun.providers.azure.batch_submit import submit_tasks
from shardrun.providers.azure.batch_tasks import (
    JobTemplate,
    TaskBodies,
    build_job,
    build_pool,
    mount_configuration,
)
from shardrun.providers.azure.blob import BlobStore
from shardrun.providers.azure.blob_auth import scrub
from shardrun.providers.azure.retry import reset_tries
from shardrun.providers.azure.settings import batch_settings


class AzureBatchBackend:
    name = "azure-batch"
    detaches = True  # Ctrl-C leaves the tasks running on Batch

    def __init__(self, spec: JobSpec, client: Any = None, image: str | None = None,
                 registry: Any = None) -> None:
        settings = batch_settings(spec)
        if settings is None:
            raise UsageError(f"{spec.source}: backend 'azure-batch' needs a [batch] section")
        self.spec = spec
        self.settings = settings
        self.client = client
        self.image = image
        self.registry = registry
        self.ctx: RunContext | None = None
        self.job_id: str | None = None
        self.job_active = False
        self.pool_id = self.settings.pool_id
        self.template: JobTemplate | None = None
        self.files: RunFiles | None = None
        self.watch: dict[str, TaskSpec] = {}
        self.numbered = True  # Batch task ids are the ledger ids' numbers (batch_merge.py)
        self.ledger_ids: dict[str, str] = {}  # Batch task id -> ledger task id
        self.failed_any = False  # a task failed for good: no cluster merge follows
        self.reported: set[str] = set()
        self.queue: list[AttemptEvent] = []
        self.notes: list[str] = []
        # Every node unusable this long (20 polls: 100 s at the default interval): give up the pool.
        self.health = PoolHealth(dead_after=20 * self.settings.poll_interval)
        self.watermark: Any = None
        self.last_completed = -1
        self.next_poll = 0.0
        self.requests_last_poll = 0
        self.done = False
        self.detached = False  # stop() was called: the core says what goes on

    # -- ComputeBackend -------------------------------------------------------------------------
    def start(self, ctx: RunContext) -> None:
        self.ctx = ctx
        if self.client is None:
            self.client = open_batch_client(self.spec)
        if not isinstance(ctx.store, BlobStore):
            raise UsageError(f"{self.spec.source}: the azure-batch backend needs [run] storage = 'blob' "
                             "(Batch nodes read and write the run's files in Blob Storage)")
        self._preflight()
        if self.settings.node_identity:
            assert self.pool_id is not None  # settings: node_identity needs pool_id
            check_identity(self.client, self.pool_id, self.settings.node_identity)
        jobs = [rid for kind, rid in ctx.resources if kind == JOB]
        pools = [rid for kind, rid in ctx.resources if kind == POOL]
        if pools and self.settings.pool_id is None:
            self.pool_id = pools[-1]
        if jobs:
            self._attach(jobs[-1])
        self.files = RunFiles(self.spec, self.settings, ctx, self.image)
        self.template = self.files.template()

    def submit(self, tasks: Sequence[TaskSpec]) -> None:
        assert self.ctx is not None
        self.watch = {t.task_id: t for t in tasks}
        self._map_ids()
        self.reported = set()
        todo = list(tasks)
        if self.job_id is not None:
            todo = self._harvest(todo)
        if not todo:
            return
        known = self._existing_ids() if self.job_id is not None and self.job_active else set()
        if self.job_id is None or not self.job_active or known & {self._bid(t.task_id) for t in todo}:
            self._new_job()
            self._map_ids()
        self._add(todo)

    def _bid(self, ledger_id: str) -> str:
        return merging.batch_task_id(ledger_id, self.numbered)

    def _map_ids(self) -> None:
        self.ledger_ids = {self._bid(t): t for t in self.watch}

    def events(self, timeout: float) -> list[AttemptEvent]:
        if not self.queue and not self.done:
            wait = self.next_poll - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout))
            if time.monotonic() >= self.next_poll:
                self.next_poll = time.monotonic() + self.settings.poll_interval
                self.poll()
        out, self.queue = self.queue, []
        return out

    def notices(self) -> list[str]:
        out, self.notes = self.notes, []
        return out

    def stop(self) -> None:
        """Detach: the job goes on in the cloud (its kill switch is max_wall_clock)."""
        self.detached = True

    def close(self) -> None:
        if self.ctx is None:
            return
        if not self.done:  # an error stopped the client: the cloud goes on, say so and how to end it
            left = [f"Batch {kind.split('-')[1]} {rid}" for kind, rid in
                    ((JOB, self.job_id), (POOL, None if self.settings.pool_id else self.pool_id)) if rid]
            if left and not self.detached:
                self.notes.append(f"{' and '.join(left)} of run {self.ctx.run_id} are still there (its "
                                  "tasks go on): `shardrun run` on the job file re-attaches; "
                                  f"`shardrun cleanup {self.ctx.run_id} --force` deletes them")
            return
        if merging.merge_follows(self.spec, self.failed_any, set(self.watch) - self.reported):
            return  # the merge task runs in the job: the cluster merge releases it (batch_collect.py)
        try:
            self.release()
        except ShardrunError as err:  # the results are safe; say what is left to delete
            self.notes.append(f"{err}; delete it with: shardrun cleanup {self.ctx.run_id}")

    # -- steps ----------------------------------------------------------------------------------
    def _preflight(self) -> None:
        assert self.ctx is not None
        preflight(self.client, self.settings.account_url, self.image, self.registry, self.ctx.store,
                  f"{self.ctx.run_id}/config/")

    def _record(self, kind: str, rid: str, deleted: bool = False) -> None:
        assert self.ctx is not None
        if self.ctx.on_resource is not None:
            self.ctx.on_resource(kind, rid, deleted)

    def _attach(self, job_id: str) -> None:
        job = call_unless(lambda: self.client.get_job(job_id, select=["id", "state", "metadata"]),
                          f"read job {job_id}", ("JobNotFound",))
        if job is None:
            self._record(JOB, job_id, deleted=True)
            return
        self.job_id = job_id
        self.numbered = merging.numbered(job)  # a job submitted before numbered ids keeps the ledger's
        self.job_active = str(job.state).lower().endswith("active")
        self.notes.append(f"re-attached to Batch job {job_id} ({str(job.state).split('.')[-1].lower()})")

    def _existing_ids(self) -> set[str]:
        assert self.job_id is not None
        job_id = self.job_id
        return call(lambda: {t.id for t in self.client.list_tasks(job_id, select=["id"])},
                    f"list the tasks of job {job_id}")

    def _harvest(self, todo: list[TaskSpec]) -> list[TaskSpec]:
        """On re-attach, once: results the job got while the client was away. Returns what is left
        to submit (tasks the job never got, or whose result the ledger already has)."""
        assert self.job_id is not None
        from azure.core.exceptions import AzureError

        reset_tries()
        try:
            finished, left = harvest(self.client, self.job_id, {self._bid(t.task_id): t for t in todo})
        except AzureError as err:
            raise explain(err, f"list the tasks of job {self.job_id}") from err
        now = time.time()
        for task, first in finished:
            self._report(task, first, now)
        return left

    def _new_job(self) -> None:
        """A pool if the run has none, then a new job: the run id, or run-retryN for later ones."""
        assert self.ctx is not None
        run_id = self.ctx.run_id
        # pieces by reference: each node gets the sources once (checked before a pool costs money)
        preparation = self.files.preparation(self.watch.values()) if self.files is not None else None
        state = None if self.pool_id is None else pool_state(self.client, self.pool_id)
        if self.pool_id is not None and state == "deleting" and self.settings.pool_id is None:
            self._record(POOL, self.pool_id, deleted=True)  # deleted by someone else: not ours now
            self.pool_id = None
        if self.pool_id is None:
            # A pool deleted earlier in this run may still be going (minutes on the service): a new
            # one gets a new id, as a new job does, rather than a job on a pool about to vanish.
            earlier = {rid for kind, rid in self.ctx.resources_ever if kind == POOL}
            self.pool_id = f"{run_id}-pool{len(earlier) + 1}" if earlier else f"{run_id}-pool"
            state = pool_state(self.client, self.pool_id)
        if state is None:
            mounts = None
            if self.settings.storage_mode == "mount" and self.files is not None:
                store: Any = self.ctx.store
                mounts = mount_configuration(store.conn.account_name, run_id, self.files.mount_sas())
            pool = build_pool(self.settings, self.pool_id, run_id, self.image, self.registry, mounts)
            if self.settings.pool_id is None:  # before it exists: a client killed in between
                self._record(POOL, self.pool_id)  # still leaves its id for cleanup
            create_owned(self.client, POOL, self.pool_id, run_id, lambda: self.client.create_pool(pool))
        elif state == "deleting":
            raise BatchError(f"pool {self.pool_id} ([batch] pool_id) is being deleted; name a pool "
                             "that stays, or leave pool_id out and shardrun makes one")
        earlier = {rid for kind, rid in self.ctx.resources_ever if kind == JOB}
        if self.job_id:
            earlier.add(self.job_id)
        job_id = f"{run_id}-retry{len(earlier)}" if earlier else run_id
        job = build_job(job_id, self.pool_id, run_id, self.settings, self.ctx.retries)
        job.job_preparation_task = preparation
        self._record(JOB, job_id)  # before it exists, as the pool
        existing = create_owned(self.client, JOB, job_id, run_id, lambda: self.client.create_job(job))
        if existing is not None and not str(existing.state).lower().endswith("active"):
            raise BatchError(f"job {job_id} of this run already exists and is not active; delete the "
                             f"run's jobs with `shardrun cleanup {run_id}`, then run again")
        self.job_id, self.job_active, self.numbered = job_id, True, True
        self.watermark, self.last_completed = None, -1

    def _add(self, todo: list[TaskSpec]) -> None:

        assert self.template is not None and self.ctx is not None and self.job_id is not None
        assert self.files is not None
        template, files, run_id = self.template, self.files, self.ctx.run_id
        bodies = TaskBodies(template)
        tolerate = merging.merges_on_cluster(self.spec) and bool(self.spec.run.allow_failures)

        def tasks() -> Iterator[dict[str, Any]]:  # made as submission takes them: never all at once
            for spec in todo:
                task = bodies.body(run_id, spec.task_id, spec.first_attempt,
                                   files.task_files(spec, template))
                task["id"] = self._bid(spec.task_id)
                task["displayName"] = f"{spec.task_id} attempt {spec.first_attempt}"
                if tolerate:
                    merging.tolerate_failure(task)
                yield task

        report = submit_tasks(self.client, self.job_id, tasks(),
                              group=lambda chunk: {"value": chunk},
                              concurrency=self.settings.submit_concurrency)
        if not report.ok:
            first = next(iter(report.failed.items()))
            raise BatchError(f"Azure Batch did not take {len(report.failed)} task(s) of job "
                             f"{self.job_id}, e.g. {first[0]}: {first[1]}")
        merge_note = ""
        if merging.merges_on_cluster(self.spec) and self.numbered:  # it runs where the last tasks run
            merging.add_merge_task(self.client, self.job_id, merging.merge_task(
                self.spec, self.files, self.template, self.ctx.run_id,
                merging.dependencies(self._bid(t.task_id) for t in todo)))
            merge_note = ", and the merge task that follows them"
        end_job_with_its_tasks(self.client, self.job_id)
        self.notes.append(f"{len(todo)} tasks submitted to Batch job {self.job_id} on pool "
                          f"{self.pool_id} in {report.requests} request(s){merge_note}")

    # -- monitoring -----------------------------------------------------------------------------
    def poll(self) -> int:
        """One monitoring round; returns the HTTP requests it made (bench/submit.py prints them)."""
        if len(self.reported) >= len(self.watch):  # reported holds only watched ids
            self.done = True
            return 0
        requests = 1
        job_id = self.job_id
        counts = call(lambda: self.client.get_job_task_counts(job_id),
                      f"read the task counts of job {job_id}").task_counts
        if counts.completed != self.last_completed:
            requests += self._read_completed()
            self.last_completed = counts.completed
        if self.pool_id is not None:
            requests += self._check_pool()
        if counts.active and not counts.running and self.files is not None and job_id:  # by reference
            asked, failure = self.files.preparation_failure(self.client, job_id, self.watch.values())
            requests += asked
            if failure:
                self.done = True  # nothing can run: release the pool and job now
                raise BatchError(failure)
        self.requests_last_poll = requests
        self.done = len(self.reported) >= len(self.watch)
        return requests

    def _read_completed(self) -> int:
        """Tasks that completed since the last look, newest window only; returns pages read. The
        window overlaps the last one, so most of what it lists was reported already: those are
        skipped before anything is built for them."""
        from azure.core.exceptions import AzureError

        query = "state eq 'completed'"
        if self.watermark is not None:
            since = (self.watermark - OVERLAP).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            query += f" and stateTransitionTime ge DateTime'{since}'"
        now = time.time()
        pages = 0
        job_id = self.job_id
        assert job_id is not None
        newest = self.watermark
        reset_tries()
        try:
            for page in list_task_pages(self.client, job_id, COMPLETED_SELECT, query):
                pages += 1
                for item in page:
                    changed = parse_time(item.get("stateTransitionTime"))
                    if changed is not None and (newest is None or changed > newest):
                        newest = changed
                    task_id = item["id"]
                    task_id = self.ledger_ids.get(task_id, task_id)
                    spec = self.watch.get(task_id)
                    if spec is not None and task_id not in self.reported:
                        task = task_record(item)
                        self._report(task, submitted_attempt(task.display_name) or spec.first_attempt, now)
        except AzureError as err:
            raise explain(err, f"list the completed tasks of job {job_id}") from err
        finally:
            self.watermark = newest
        return max(pages, 1)

    def _report(self, task: TaskRecord, first: int, now: float) -> None:
        ledger_id = self.ledger_ids.get(task.id, task.id)
        events = task_events(task, first, now, self.image)
        if ledger_id != task.id:
            events = [dataclasses.replace(e, task_id=ledger_id) for e in events]
        final = events[-1]
        if final.result != "succeeded":
            self.failed_any = True
            if final.attempt != first:
                self._move_logs(ledger_id, first, final.attempt)
        self.queue += events
        self.reported.add(ledger_id)

    def _move_logs(self, task_id: str, first: int, final: int) -> None:
        """Batch keeps one log upload per submission (under the first attempt's key); file it
        under the attempt that wrote it."""
        assert self.ctx is not None
        store = self.ctx.store
        for stream in ("stdout", "stderr"):
            with contextlib.suppress(FileNotFoundError):
                data = store.get_bytes(log_key(self.ctx.run_id, task_id, first, stream))
                store.put_bytes(log_key(self.ctx.run_id, task_id, final, stream), data)

    def _check_pool(self) -> int:
        """Resize errors, unusable nodes (and why, when their number changes), preemptions."""
        assert self.pool_id is not None
        requests, notes, fatal = self.health.check(self.client, self.pool_id)
        secret = self.registry.password if self.registry is not None else None
        self.notes += [scrub(n, secret) for n in notes]
        if fatal is not None:
            self.done = True  # nothing can run: release the pool and job now
            raise BatchError(scrub(str(fatal), secret))
        return requests

    # -- cleanup --------------------------------------------------------------------------------
    def release(self) -> list[str]:
        """Delete this run's job(s) and, unless kept, its pool, by exact id."""
        assert self.ctx is not None
        gone = []
        for kind, rid in list(self.ctx.resources) + ([(JOB, self.job_id)] if self.job_id else []):
            if kind == JOB and rid and rid not in gone:
                delete_job(self.client, rid)
                self._record(JOB, rid, deleted=True)
                gone.append(rid)
        if self.pool_id and self.settings.pool_id is None and not self.settings.keep_pool:
            delete_pool(self.client, self.pool_id)
            self._record(POOL, self.pool_id, deleted=True)
            gone.append(self.pool_id)
        return gone
