"""Reading Azure Batch: task results become AttemptEvents, and service errors become advice.

A poll costs the same number of requests at 100 tasks as at 100,000: the job's task counts, the
pool and its node counts, and (only when the counts moved) the tasks that completed since the last
poll. It never lists every task.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any

from shardrun.core.compute import AttemptEvent
from shardrun.core.errors import ShardrunError
from shardrun.providers.azure.batch_tasks import NO_OUTPUT_EXIT

OVERLAP = dt.timedelta(seconds=5)  # re-read a little of the last window: clocks and ties
COMPLETED_SELECT = ["id", "displayName", "stateTransitionTime", "executionInfo", "nodeInfo"]
ATTEMPT_RE = re.compile(r"attempt (\d+)$")

# What to do about the errors users hit; codes from the service's documentation.
ADVICE = {
    "ActiveJobAndScheduleQuotaReached": "the account has too many active jobs: delete finished ones "
    "(`shardrun gc --job JOB`, `shardrun cleanup RUN`) or ask for a higher quota in the Azure portal",
    "PoolQuotaReached": "the account has too many pools: delete unused ones (`shardrun cleanup RUN` "
    "for kept pools) or ask for a higher quota",
    "AccountCoreQuotaReached": "the account's dedicated core quota is used up: ask for more cores "
    "(Azure portal, Batch account, Quotas), use fewer or smaller nodes, or Spot nodes",
    "AccountLowPriorityCoreQuotaReached": "the account's Spot core quota is used up: ask for more "
    "Spot cores, or use dedicated nodes",
    "AccountVMSeriesCoreQuotaReached": "the quota for this VM series is used up: ask for more, or "
    "pick another vm_size",
    "AllocationFailed": "Azure has no capacity for this VM size in the region now: try another "
    "vm_size, or dedicated instead of Spot nodes",
    "AllocationTimedout": "the nodes did not arrive in time: try again, or another vm_size",
    "AuthenticationFailed": "the Batch account rejected the credentials: check [batch] auth and the "
    "account key secret, or `az login` for default_credential",
    "InsufficientSubnetSize": "the pool's subnet has too few free addresses",
}
QUOTA_CODES = {"AccountCoreQuotaReached", "AccountLowPriorityCoreQuotaReached",
               "AccountVMSeriesCoreQuotaReached", "PoolQuotaReached", "ActiveJobAndScheduleQuotaReached"}
TIMEOUT_CODES = {"MaxWallClockTimeExceeded", "TaskEnded"}
SECRET_PROPERTY = re.compile(r"password|key|sas|secret|token|containerUrl|httpUrl|Url$", re.I)


class BatchError(ShardrunError):
    """Azure Batch refused or failed something; the message says what to do."""


def error_code(err: BaseException) -> str | None:
    inner = getattr(err, "error", None)
    return getattr(inner, "code", None)


def explain(err: BaseException, action: str) -> BatchError:
    """An azure-core error as one line with advice. Messages from the service carry no secrets,
    but only the first line is kept: the rest is request ids and times."""
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
    return BatchError(f"Azure Batch could not {action}: {label}{first}" + (f"; {advice}" if advice else ""))


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


def submitted_attempt(display_name: str | None) -> int | None:
    """The first attempt number of a submission, kept in the task's display name."""
    m = ATTEMPT_RE.search(display_name or "")
    return int(m.group(1)) if m else None


def _seconds(t: dt.datetime | None, default: float) -> float:
    return t.timestamp() if t is not None else default


def task_events(task: Any, first_attempt: int, now: float, image: str | None = None) -> list[AttemptEvent]:
    """Events for a completed task: Batch retried it `retry_count` times on its own, so the earlier
    attempts are reported as failed ones, then the last attempt with its result."""
    info = task.execution_info
    retries = int(getattr(info, "retry_count", 0) or 0)
    node = getattr(getattr(task, "node_info", None), "node_id", None) or ""
    end = _seconds(getattr(info, "end_time", None), _seconds(task.state_transition_time, now))
    start = _seconds(getattr(info, "start_time", None), end)
    last_retry = _seconds(getattr(info, "last_retry_time", None), start)
    events = []
    for attempt in range(first_attempt, first_attempt + retries):
        events += [
            AttemptEvent(task.id, attempt, "started", min(last_retry, start), worker=node),
            AttemptEvent(task.id, attempt, "finished", min(last_retry, start), worker=node,
                         result="failed", reason="failed; Azure Batch retried it (its logs are "
                         "replaced by the next attempt's)"),
        ]
    final = first_attempt + retries
    ok = str(getattr(info, "result", "")).lower().endswith("success")
    code = getattr(getattr(info, "failure_info", None), "code", None)
    result = "succeeded" if ok else ("timeout" if code in TIMEOUT_CODES else "failed")
    events += [
        AttemptEvent(task.id, final, "started", start, worker=node),
        AttemptEvent(task.id, final, "finished", end, worker=node, result=result,
                     exit_code=getattr(info, "exit_code", None),
                     reason=None if ok else task_reason(info, image), final=True),
    ]
    return events


@dataclass
class PoolHealth:
    """What was last said about the pool, so each problem is reported once, when it appears.
    `dead_after`: how long every node may be unusable before the run gives up on the pool."""

    dead_after: float = 600.0
    said: set[str] = field(default_factory=set)
    preempted_seen: int = 0
    all_unusable_since: float | None = None

    def review(self, pool: Any, counts: Any | None, now: float | None = None,
               ) -> tuple[list[str], BatchError | None]:
        """-> (notices, a fatal error when no node can ever come)."""
        now = time.monotonic() if now is None else now
        notes: list[str] = []
        fatal = None
        nodes = (pool.current_dedicated_nodes or 0) + (pool.current_low_priority_nodes or 0)
        for err in pool.resize_errors or []:
            key = f"resize:{err.code}"
            if key in self.said:
                continue
            self.said.add(key)
            advice = ADVICE.get(err.code or "", "")
            notes.append(f"pool {pool.id} could not grow: {err.code}: {err.message}"
                         + (f"; {advice}" if advice else ""))
            if err.code in QUOTA_CODES and nodes == 0:
                fatal = BatchError(f"pool {pool.id} cannot get any node: {err.code}: {err.message}"
                                   + (f"; {advice}" if advice else ""))
        if counts is not None:
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
        return notes, fatal
