"""The states of runs, tasks and attempts, and the one place a run's state may change.

A run (docs/architecture.md draws it):

    splitting -> running -> merging -> succeeded
                    |          |-----> merge-failed -> merging (shardrun merge, run, retry)
                    |-> failed (tasks failed and allow_failures is off)
                    |-> interrupted (Ctrl-C, SIGTERM, kill) -> running (shardrun run resumes)
    any state but splitting -> cleaned (shardrun cleanup)

The values are the ledger's strings, so old ledgers read the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    SPLITTING = "splitting"
    RUNNING = "running"
    MERGING = "merging"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MERGE_FAILED = "merge-failed"
    INTERRUPTED = "interrupted"
    CLEANED = "cleaned"


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AttemptResult(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    LOST = "lost"


R = RunState
# Where a run may go from each state. A run that needs work again (retry, lost outputs, a resume)
# goes back to running; a finished run may be merged again.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    R.SPLITTING: frozenset({R.RUNNING, R.FAILED, R.INTERRUPTED}),
    R.RUNNING: frozenset({R.RUNNING, R.MERGING, R.FAILED, R.INTERRUPTED, R.CLEANED}),
    R.MERGING: frozenset({R.SUCCEEDED, R.MERGE_FAILED, R.INTERRUPTED, R.RUNNING, R.FAILED}),
    R.MERGE_FAILED: frozenset({R.MERGING, R.RUNNING, R.CLEANED, R.INTERRUPTED}),
    R.INTERRUPTED: frozenset({R.RUNNING, R.MERGING, R.FAILED, R.CLEANED, R.INTERRUPTED}),
    R.FAILED: frozenset({R.RUNNING, R.MERGING, R.CLEANED, R.FAILED}),
    R.SUCCEEDED: frozenset({R.RUNNING, R.MERGING, R.CLEANED, R.SUCCEEDED}),
    R.CLEANED: frozenset({R.CLEANED}),
}
# A run in one of these needs its client; `shardrun run JOB` picks it up again.
UNFINISHED = frozenset({R.SPLITTING, R.RUNNING, R.MERGING, R.INTERRUPTED, R.MERGE_FAILED})
# gc never collects these: their client may be working, or they can be resumed.
LIVE = frozenset({R.SPLITTING, R.RUNNING, R.MERGING, R.INTERRUPTED})
# The run is over: `finished_at` is set.
FINAL = frozenset({R.SUCCEEDED, R.FAILED, R.MERGE_FAILED, R.CLEANED})


class BadTransition(RuntimeError):
    """A bug: code asked for a state change the state machine does not allow."""


def check_transition(current: str, new: RunState) -> None:
    if new not in TRANSITIONS[RunState(current)]:
        raise BadTransition(f"a run cannot go from {current} to {new}")


RETRIED_AFTER = ("failed", "timeout")  # an attempt after one of these is a retry


def is_retry(attempt: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    """An attempt after a failed or timed-out one of its task (an unknown earlier one counts too)."""
    if int(attempt["attempt"]) <= 1:
        return False
    return previous is None or previous["result"] in RETRIED_AFTER


def retry_flags(attempts: Sequence[Mapping[str, Any]]) -> list[bool]:
    """is_retry for each attempt, in the order given."""
    by_key = {(a["task_id"], int(a["attempt"])): a for a in attempts}
    return [is_retry(a, by_key.get((a["task_id"], int(a["attempt"]) - 1))) for a in attempts]
