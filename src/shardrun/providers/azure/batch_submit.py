"""Bulk task submission to Azure Batch: chunks of at most 100 tasks and 1 MB, sent concurrently.

Why not the SDK's `create_tasks`: it retries a whole-request 5xx forever, loses its results on a 429
without Retry-After, and submits in reverse order. Here every retry is bounded:
- a whole request that is throttled, fails with a 5xx, or loses its answer is retried by the
  client's policy (retry.py: bounded, honours Retry-After, POST included); once that gives up, the
  submission stops with an error naming the job and the tries;
- tasks the service answers with `servererror`, or does not answer for, are sent again in a later
  round, at most `max_rounds` rounds, with backoff;
- `TaskExists` means an earlier request already added the task (a resubmission after a lost
  answer, or a client that died): success;
- a request rejected as too large (413 RequestBodyTooLarge) is split in half and both halves sent.

The tasks may come from a generator: they are chunked as they come, with a few chunks per worker in
flight, so a job of 100,000 tasks never holds 100,000 SDK task models at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from shardrun.providers.azure.batch_monitor import error_code, explain
from shardrun.providers.azure.retry import reset_tries
from shardrun.providers.azure.windowed import in_order

MAX_TASKS_PER_REQUEST = 100
MAX_BODY_BYTES = 1_000_000 - 16_384  # the service's limit is 1 MB; leave room for the envelope


class TaskCollectionClient(Protocol):
    """The one method of azure.batch.BatchClient this module needs (a fake can stand in)."""

    def create_task_collection(self, job_id: str, task_collection: Any, **kwargs: Any) -> Any: ...


@dataclass
class SubmitReport:
    added: int = 0
    already_existed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # task id -> "Code: message"
    requests: int = 0
    rounds: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def task_size(task: Any) -> int:
    """Bytes the task adds to a request body: a REST body (dict) or an SDK model."""
    body = task if isinstance(task, dict) else task.as_dict()
    return len(json.dumps(body, separators=(",", ":"), default=str))


def iter_chunks(tasks: Iterable[Any], max_tasks: int = MAX_TASKS_PER_REQUEST,
                max_bytes: int = MAX_BODY_BYTES) -> Iterator[list[Any]]:
    """Greedy chunks in submission order, each within both limits, made as the tasks come."""
    current: list[Any] = []
    size = 0
    for task in tasks:
        n = task_size(task)
        if current and (len(current) >= max_tasks or size + n > max_bytes):
            yield current
            current, size = [], 0
        current.append(task)
        size += n
    if current:
        yield current


def make_chunks(tasks: Iterable[Any], max_tasks: int = MAX_TASKS_PER_REQUEST,
                max_bytes: int = MAX_BODY_BYTES) -> list[list[Any]]:
    return list(iter_chunks(tasks, max_tasks, max_bytes))


def submit_tasks(
    client: TaskCollectionClient,
    job_id: str,
    tasks: Iterable[Any],
    *,
    group: Callable[[list[Any]], Any],
    concurrency: int = 8,
    max_rounds: int = 5,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SubmitReport:
    """Add `tasks` (any iterable, read once, in order) to the job. `group` wraps a chunk in the SDK's
    BatchTaskGroup. Raises BatchError when a whole request fails for good (after the client's
    retries)."""
    from azure.core.exceptions import HttpResponseError

    report = SubmitReport()
    lock = threading.Lock()

    def send(chunk: list[Any]) -> list[tuple[Any, str, str]]:
        """-> (task, outcome, detail) with outcome in added | exists | retry | failed."""
        with lock:
            report.requests += 1
        reset_tries()
        try:
            result = client.create_task_collection(job_id, group(chunk))
        except HttpResponseError as err:
            if err.status_code == 413 or error_code(err) == "RequestBodyTooLarge":
                if len(chunk) == 1:
                    return [(chunk[0], "failed", "RequestBodyTooLarge: this one task is over 1 MB")]
                half = len(chunk) // 2
                return send(chunk[:half]) + send(chunk[half:])
            raise explain(err, f"add {len(chunk)} tasks to job {job_id}") from err
        except Exception as err:  # no answer, after the client's retries
            raise explain(err, f"add {len(chunk)} tasks to job {job_id}") from err
        by_id = {t["id"]: t for t in chunk}  # a REST body or an SDK model: both map REST names
        out = []
        for r in result.result_values or []:
            task = by_id.pop(r.task_id, None)
            if task is None:
                continue  # not a task of this chunk (or answered twice)
            code = r.error.code if r.error else None
            if r.status == "success":
                out.append((task, "added", ""))
            elif code == "TaskExists":
                out.append((task, "exists", ""))
            elif r.status == "servererror":
                out.append((task, "retry", code or "servererror"))
            else:
                message = r.error.message.value if r.error and r.error.message else ""
                out.append((task, "failed", f"{code}: {message}".strip(": ")))
        # A task the service did not answer for is sent again (same id, so never added twice).
        out += [(t, "retry", "no result") for t in by_id.values()]
        return out

    pending: Iterable[Any] = tasks
    last_reason: dict[str, str] = {}
    workers = max(1, concurrency)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for round_no in range(max_rounds):
            report.rounds = round_no + 1
            retry: list[Any] = []
            for outcomes in in_order(pool, send, iter_chunks(pending), 2 * workers):
                for task, outcome, detail in outcomes:
                    if outcome == "added":
                        report.added += 1
                    elif outcome == "exists":
                        report.already_existed += 1
                    elif outcome == "retry":
                        retry.append(task)
                        last_reason[task["id"]] = detail
                    else:
                        report.failed[task["id"]] = detail
            if not retry:
                return report
            pending = retry
            if round_no + 1 < max_rounds:
                sleep(min(backoff * 2**round_no, 30.0))
    for t in pending:
        task_id = t["id"]
        report.failed[task_id] = f"gave up after {max_rounds} rounds: {last_reason.get(task_id, '')}"
    return report
