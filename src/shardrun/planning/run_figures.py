"""The figures of a run's report, counted from its ledger rows, each with its definition.

- **retries**: attempts that follow a failed or timed-out attempt of the same task (by the run's own
  retries, by Batch's, or by `shardrun retry`). An attempt after one that was interrupted, or lost
  when the client stopped, is the run resuming, not a retry.
- **wall time**: the time the run was at work: from its start to its first attempt (splitting,
  uploading, starting nodes), plus every stretch in which at least one attempt ran. Stretches in
  which none ran after the first attempt began (the idle gap before a later retry or resume) are
  left out; so is the merge, which the ledger does not time. `elapsed` is the plain span from the
  run's start to its last attempt's end, gaps included.
- **busy share**: attempt time over (task slots x the time attempts ran); slots are nodes x task
  slots per node on Azure Batch, the concurrency elsewhere, and never fewer than the most attempts
  seen at once, so the share is at most 100%.

Attempts lost when the client stopped have no known end (the ledger closes them when the next
client starts), so they count towards none of the times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shardrun.core.states import retry_flags


@dataclass(frozen=True)
class Slots:
    count: int
    basis: str  # how they were counted, e.g. "2 nodes x 2 task slots"


@dataclass(frozen=True)
class RunFigures:
    attempts: int
    retries: int
    resumed: int  # attempts after an interrupted or lost one
    task_seconds: float  # the attempts' own time, lost ones left out
    prep_seconds: float  # the run's start to its first attempt
    running_seconds: float  # time in which at least one attempt ran
    elapsed_seconds: float  # the run's start to its last attempt's end, gaps included
    slots: Slots
    busy_share: float | None  # task_seconds / (slots x running_seconds), at most 1

    @property
    def wall_seconds(self) -> float:
        return self.prep_seconds + self.running_seconds

    @property
    def idle_seconds(self) -> float:
        return max(0.0, self.elapsed_seconds - self.wall_seconds)


def spans(attempts: Sequence[Mapping[str, Any]], now: float) -> list[tuple[float, float]]:
    """(start, end) of every attempt with a known end (a running one: now), lost ones left out."""
    return [(float(a["started_at"]), float(a["ended_at"] if a["ended_at"] is not None else now))
            for a in attempts if a["result"] != "lost"]


def covered(intervals: Sequence[tuple[float, float]]) -> float:
    """The length of their union."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def peak(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one moment (one ending as another starts: not both)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = level = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


def count_slots(configured: Slots | None, intervals: Sequence[tuple[float, float]]) -> Slots:
    """The configured slots, or the most attempts seen at once if that is more."""
    seen = peak(intervals)
    if configured is None or seen > configured.count:
        return Slots(seen, f"{seen} at once, the most seen")
    return configured


def figures(attempts: Sequence[Mapping[str, Any]], created_at: float, now: float,
            configured: Slots | None) -> RunFigures:
    intervals = spans(attempts, now)
    flags = retry_flags(attempts)
    retries = sum(flags)
    resumed = sum(1 for a, retry in zip(attempts, flags, strict=True) if int(a["attempt"]) > 1 and not retry)
    task_seconds = sum(max(0.0, e - s) for s, e in intervals)
    first = min((float(a["started_at"]) for a in attempts), default=None)
    prep = max(0.0, first - created_at) if first is not None else 0.0
    running = covered(intervals)
    last = max((e for _, e in intervals), default=first if first is not None else created_at)
    slots = count_slots(configured, intervals)
    share = min(1.0, task_seconds / (slots.count * running)) if running > 0 and slots.count else None
    return RunFigures(len(attempts), retries, resumed, task_seconds, prep, running,
                      max(0.0, last - created_at), slots, share)
