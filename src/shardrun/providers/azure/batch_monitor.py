"""Reading Azure Batch: task results become AttemptEvents, and service errors become advice.

A poll costs the same number of requests at 100 tasks as at 100,000: the job's task counts, the
pool and its node counts, and (only when the counts moved) the tasks that completed since the last
poll. It never lists every task.

Task listings are read as JSON (`list_task_pages`), not as the SDK's models: building a BatchTask
model costs about 0.5 ms of CPU, and a poll re-reads the tasks of its overlap window, so at 100,000
tasks the models alone were minutes of client CPU. A TaskRecord keeps only what the client uses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shardrun.core.compute import AttemptEvent
from shardrun.core.errors import ShardrunError
from shardrun.providers.azure.batch_listing import TaskRecord
from shardrun.providers.azure.batch_tasks import NO_OUTPUT_EXIT
from shardrun.providers.azure.retry import last_tries, reset_tries

T = TypeVar("T")

OVERLAP = dt.timedelta(seconds=5)  # re-read a little of the last window: clocks and ties

# What to do about the errors users hit; codes from the service's documentation.
ADVICE = {
    "ActiveJobAndScheduleQuotaReached": "the account has too many active jobs: delete finished ones "
    "(`shardrun gc --job JOB`, `shardrun cleanup RUN`) or ask for a higher quota in the Azure portal",
    "PoolQuotaReached": "the account has too many pools: delete unused ones (`shardrun cleanup RUN` "
    "for kept pools) or ask for a higher quota",
    "AccountCoreQuotaReached": "the Batch account's dedicated core quota is used up: ask for more "
    "dedicated cores (Azure portal, Batch account, Quotas), use fewer or smaller nodes, or Spot "
    "nodes (spot_nodes, or autoscale_spot = true), which have a quota of their own",
    "AccountLowPriorityCoreQuotaReached": "the Batch account's Spot core quota is used up: ask for "
    "more Spot cores (Azure portal, Batch account, Quotas), use fewer or smaller nodes, or dedicated "
    "nodes (dedicated_nodes, or autoscale_spot = false)",
    "AccountVMSeriesCoreQuotaReached": "the account's quota for this VM series is used up: ask for "
    "more, or pick a vm_size of another series",
    "AllocationFailed": "Azure has no capacity for this vm_size in the region now: try another "
    "vm_size or region, or dedicated nodes instead of Spot (Spot capacity goes first)",
    "AllocationTimedOut": "the nodes did not arrive before the resize timeout (no capacity for this "
    "vm_size in the region now): run again later, or try another vm_size or region",
    "AuthenticationFailed": "the Batch account rejected the credentials: check [batch] auth and the "
    "account key secret, or `az login` for default_credential",
    "InsufficientSubnetSize": "the pool's subnet has too few free addresses",
    "ContainerImagePullFailed": "check that the image was pushed (`shardrun image push`), the "
    "[image] registry login (username, password_secret), and that the nodes can reach the registry",
}
ADVICE["AllocationTimedout"] = ADVICE["AllocationTimedOut"]  # both spellings are in the wild
# Resize errors that leave a pool without the nodes it asked for: the service does not retry them.
RESIZE_STOPPERS = {"AccountCoreQuotaReached", "AccountLowPriorityCoreQuotaReached",
                   "AccountVMSeriesCoreQuotaReached", "AllocationFailed", "AllocationTimedOut",
                   "AllocationTimedout", "InsufficientSubnetSize"}
PULL_FAILED = "ContainerImagePullFailed"
TIMEOUT_CODES = {"MaxWallClockTimeExceeded", "TaskEnded"}
SECRET_PROPERTY = re.compile(r"password|key|sas|secret|token|containerUrl|httpUrl|Url$", re.I)


class BatchError(ShardrunError):
    """Azure Batch refused or failed something; the message says what to do."""


def error_code(err: BaseException) -> str | None:
    inner = getattr(err, "error", None)
    return getattr(inner, "code", None)


def call(fn: Callable[[], T], action: str) -> T:
    """One Batch request (retried by the client's policy, retry.py); its error explained."""
    reset_tries()
    try:
        return fn()
    except Exception as err:
        raise explain(err, action) from err


def call_unless(fn: Callable[[], T], action: str, codes: Collection[str]) -> T | None:
    """`call`, where an error with one of `codes` is an answer, not a failure: None then (a
    resource that is not there, a create or an update applied before its answer was lost)."""
    reset_tries()
    try:
        return fn()
    except Exception as err:
        if error_code(err) in codes:
            return None
        raise explain(err, action) from err


def explain(err: BaseException, action: str) -> BatchError:
    """An azure-core error as one line with advice, and the tries it took when the request was
    retried (`explain` runs in the thread that made it). Messages from the service carry no
    secrets, but only the first line is kept: the rest is request ids and times."""
    code = error_code(err)
    status = getattr(err, "status_code", None)
    message = str(getattr(getattr(err, "error", None), "message", "") or err).strip().splitlines()
    first = message[0] if message else type(err).__name__
    if code is None and status == 403:
        code = "AuthenticationFailed"
    advice = ADVICE.get(code or "", "")
    # The service names the offending property in values (Reason, PropertyName, ...).
    values = {getattr(v, "key", None): getattr(v, "value", "") for v in
              getattr(getattr(err, "model", None), "error_values", None) or []}
    details = []
    name = str(values.get("PropertyName") or "")
    if name:
        details.append(f"PropertyName: {name}")
    # A reason may quote the rejected value: never for a property that holds a secret.
    if values.get("Reason") and not SECRET_PROPERTY.search(name):
        details.append(f"Reason: {values['Reason']}")
    if details:
        first = f"{first} ({'; '.join(details)})"
    label = f"{code} " if code else (f"HTTP {status} " if status else "")
    tries = last_tries()
    spent = f" {tries}" if tries is not None and tries.count > 1 else ""
    return BatchError(f"Azure Batch could not {action}{spent}: {label}{first}"
                      + (f"; {advice}" if advice else ""))


def task_reason(info: Any, image: str | None = None) -> str:
    """Why an attempt failed, from executionInfo, in words a user can act on."""
    failure = getattr(info, "failure_info", None)
    code = getattr(failure, "code", None) or ""
    message = (getattr(failure, "message", None) or "").strip()
    exit_code = getattr(info, "exit_code", None)
    if exit_code == NO_OUTPUT_EXIT:
        return "exited 0 but wrote nothing at OUTPUT_PATH"
    text = f"{code} {message}".lower()
    if "image" in text and ("pull" in text or "not found" in text or "manifest" in text):
        return (f"the node could not pull the image{f' {image}' if image else ''} ({code}: {message}); "
                "check that it was pushed (`shardrun image push`) and the [image] registry credentials")
    if code in TIMEOUT_CODES:
        return f"timed out ({code})"
    if code in ("CommandProgramNotFound", "CommandLaunchFailed"):
        return f"the command could not start ({code}: {message})"
    if exit_code not in (None, 0):
        return f"exit code {exit_code}" + (f" ({message})" if message else "")
    return f"{code}: {message}" if code else (message or "failed")


def _seconds(t: dt.datetime | None, default: float) -> float:
    return t.timestamp() if t is not None else default


def task_events(task: TaskRecord, first_attempt: int, now: float,
                image: str | None = None) -> list[AttemptEvent]:
    """Events for a completed task: Batch retried it `retry_count` times on its own, so the earlier
    attempts are reported as failed ones, then the last attempt with its result."""
    info = task.execution_info
    retries = info.retry_count
    node = task.node_id or ""
    end = _seconds(info.end_time, _seconds(task.state_transition_time, now))
    start = _seconds(info.start_time, end)
    last_retry = _seconds(info.last_retry_time, start)
    events = []
    for attempt in range(first_attempt, first_attempt + retries):
        events += [
            AttemptEvent(task.id, attempt, "started", min(last_retry, start), worker=node),
            AttemptEvent(task.id, attempt, "finished", min(last_retry, start), worker=node,
                         result="failed", reason="failed; Azure Batch retried it (its logs are "
                         "replaced by the next attempt's)"),
        ]
    final = first_attempt + retries
    ok = str(info.result or "").lower().endswith("success")
    code = info.failure_info.code if info.failure_info is not None else None
    result = "succeeded" if ok else ("timeout" if code in TIMEOUT_CODES else "failed")
    events += [
        AttemptEvent(task.id, final, "started", start, worker=node),
        AttemptEvent(task.id, final, "finished", end, worker=node, result=result,
                     exit_code=info.exit_code,
                     reason=None if ok else task_reason(info, image), final=True),
    ]
    return events


def node_problem(node: Any) -> str:
    """What an unusable node's errors say: 'Code: message (Name: value; ...)'."""
    parts = []
    for err in getattr(node, "errors", None) or []:
        details = "; ".join(f"{d.name}: {d.value}" for d in err.error_details or [])
        parts.append(f"{err.code}: {(err.message or '').strip()}" + (f" ({details})" if details else ""))
    return "; ".join(parts)


@dataclass
class PoolHealth:
    """What was last said about the pool, so each problem is reported once, when it appears.
    `dead_after`: how long every node may be unusable before the run gives up on the pool.

    The rule (docs/azure.md): a resize error is said on the first poll that sees it, with what it
    means and what to do. The service does not retry a failed resize, so if no node of the pool
    is usable then, the run stops (the pool and job are deleted); with some usable nodes it goes
    on with those. An image pull failure stops the run as soon as every node is unusable (each
    would pull the same image with the same login); other unusable nodes get `dead_after`."""

    dead_after: float = 600.0
    said: set[str] = field(default_factory=set)
    preempted_seen: int = 0
    all_unusable_since: float | None = None
    unusable_listed: int = 0  # unusable nodes when their reasons were last listed

    def check(self, client: Any, pool_id: str) -> tuple[int, list[str], BatchError | None]:
        """Read the pool and its node counts (and, when the number of unusable nodes changes,
        those nodes) and review them. -> (requests made, notices, fatal error or None)."""
        requests = 2
        pool = call(lambda: client.get_pool(pool_id, select=[
            "id", "resizeErrors", "currentDedicatedNodes", "currentLowPriorityNodes"]),
            f"read pool {pool_id}")
        counts = None
        with contextlib.suppress(Exception):  # node counts are advice only
            for item in client.list_pool_node_counts(filter=f"poolId eq '{pool_id}'"):
                counts = [item.dedicated, item.low_priority]
        unusable = sum(int(c.unusable or 0) for c in counts or [])
        nodes = None
        if unusable and unusable != self.unusable_listed:
            self.unusable_listed = unusable
            requests += 1
            with contextlib.suppress(Exception):  # the reason is advice only
                nodes = list(client.list_nodes(pool_id, filter="state eq 'unusable'",
                                               select=["id", "errors"]))
        notes, fatal = self.review(pool, counts, unusable_nodes=nodes)
        return requests, notes, fatal

    def review(self, pool: Any, counts: Any | None, now: float | None = None,
               unusable_nodes: list[Any] | None = None) -> tuple[list[str], BatchError | None]:
        """-> (notices, a fatal error when no node can ever come). `counts`: the pool's
        [dedicated, spot] node counts; `unusable_nodes`: its unusable nodes, with their errors."""
        now = time.monotonic() if now is None else now
        notes: list[str] = []
        fatal = None
        nodes = (pool.current_dedicated_nodes or 0) + (pool.current_low_priority_nodes or 0)
        unusable = sum(int(getattr(c, "unusable", 0) or 0) for c in counts or [])
        for err in pool.resize_errors or []:
            code = err.code or ""
            if f"resize:{code}" in self.said:
                continue
            self.said.add(f"resize:{code}")
            advice = ADVICE.get(code, "")
            what = f"{code}: {(err.message or '').strip()}" + (f"; {advice}" if advice else "")
            if code in RESIZE_STOPPERS and nodes - unusable <= 0:
                fatal = BatchError(f"pool {pool.id} cannot get any node ({what}). The run stops and "
                                   "deletes its job and pool; run it again once that is fixed")
            else:
                notes.append(f"pool {pool.id} could not grow ({what}); the tasks run on the "
                              f"{nodes - unusable} node(s) it has")
        fatal = fatal or self._pull_failures(pool, unusable_nodes or [], nodes, unusable, notes)
        if counts is not None:
            fatal = fatal or self._node_counts(pool, counts, now, notes)
        return notes, fatal

    def _pull_failures(self, pool: Any, unusable_nodes: list[Any], nodes: int, unusable: int,
                       notes: list[str]) -> BatchError | None:
        failed = [n for n in unusable_nodes if any(e.code == PULL_FAILED for e in n.errors or [])]
        if not failed:
            return None
        problem = node_problem(failed[0])
        if nodes and unusable >= nodes:
            return BatchError(f"no node of pool {pool.id} could get the app's image ({problem}); "
                              f"{ADVICE[PULL_FAILED]}. The run stops and deletes its job and pool")
        if "pull" not in self.said:
            self.said.add("pull")
            notes.append(f"{len(failed)} node(s) of pool {pool.id} could not get the app's image "
                         f"({problem}); {ADVICE[PULL_FAILED]}. Tasks run on the other nodes")
        return None

    def _node_counts(self, pool: Any, counts: Any, now: float, notes: list[str]) -> BatchError | None:
        fatal = None
        unusable = sum(int(getattr(c, "unusable", 0) or 0) for c in counts)
        start_failed = sum(int(getattr(c, "start_task_failed", 0) or 0) for c in counts)
        preempted = int(getattr(counts[-1], "preempted", 0) or 0)
        total = sum(int(getattr(c, "total", 0) or 0) for c in counts)
        if unusable and f"unusable:{unusable}" not in self.said:
            self.said.add(f"unusable:{unusable}")
            notes.append(f"{unusable} of {total or unusable} node(s) of pool {pool.id} are "
                         "unusable (they failed to start or lost their disk); tasks run on the "
                         "others. If it persists, try another vm_size or image")
        if unusable and unusable >= total:
            self.all_unusable_since = self.all_unusable_since or now
            if now - self.all_unusable_since >= self.dead_after:
                fatal = BatchError(
                    f"every node of pool {pool.id} has been unusable for "
                    f"{now - self.all_unusable_since:.0f}s, so no task can run; the pool and "
                    "job are deleted. Try another vm_size or image, then run again")
        else:
            self.all_unusable_since = None
        if start_failed and f"startfail:{start_failed}" not in self.said:
            self.said.add(f"startfail:{start_failed}")
            notes.append(f"{start_failed} node(s) of pool {pool.id} failed their start task")
        if preempted and preempted != self.preempted_seen:
            notes.append(f"{preempted} Spot node(s) preempted in pool {pool.id}; their tasks are "
                         "requeued and run again (this uses no retry)")
        self.preempted_seen = preempted
        return fatal

