"""Indexes over each job's tasks, kept current on every state change, so that nothing done per tick or
per request scans every task of a job (a job may hold 100,000):

- `counts`: tasks and slots per state (active, running, succeeded, failed). Task counts, autoscale
  metrics and "have all tasks completed?" read them in O(1).
- `ready`: a heap of active tasks by the order they were added (a retried or requeued task keeps its
  place). Placement pops what it places; a task whose dependencies are not met waits in `waiting`,
  which is looked at again only after a task of the job completes.
- `order`: (sequence, key) in the order tasks were added, so a list page starts where the last one
  stopped (O(log n)) instead of sorting and skipping.
- `completed`: (stateTransitionTime, key) of completed tasks, in time order, so "state eq 'completed'
  and stateTransitionTime ge X" starts at X.

Entries are never removed in place: a task that left the state an entry says is checked on read, and
a list is compacted once half of it is stale.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .odata import norm_time, top_conjuncts
from .state import Resource, iso, utcnow

STATES = ("active", "running", "succeeded", "failed")


def count_bucket(task: Resource) -> str:
    state = task["state"]
    if state == "completed":
        return "succeeded" if task["executionInfo"].get("result") == "success" else "failed"
    return "running" if state == "preparing" else state


@dataclass
class JobIndex:
    counts: dict[str, list[int]] = field(default_factory=lambda: {s: [0, 0] for s in STATES})
    ready: list[tuple[int, str]] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)
    recheck: bool = False  # a task completed: waiting tasks may be ready now
    epoch: int = 0  # changes when a task is added, deleted or leaves completed (exits.py cursors)
    order: list[tuple[int, str]] = field(default_factory=list)
    completed: list[tuple[str, str]] = field(default_factory=list)
    next_seq: int = 0
    stale_order: int = 0
    stale_completed: int = 0

    def count(self, bucket: str) -> int:
        return self.counts[bucket][0]

    def task_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """TaskCounts and TaskSlotCounts."""
        tasks = {s: c[0] for s, c in self.counts.items()}
        slots = {s: c[1] for s, c in self.counts.items()}
        for out in (tasks, slots):
            out["completed"] = out["succeeded"] + out["failed"]
        return tasks, slots

    def _tally(self, task: Resource, sign: int) -> None:
        entry = self.counts[count_bucket(task)]
        entry[0] += sign
        entry[1] += sign * task.get("requiredSlots", 1)


class TaskIndexes:
    """Every job's JobIndex; the State owns one. Callers hold the state lock."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobIndex] = {}

    def job(self, job_key: str) -> JobIndex:
        index = self.jobs.get(job_key)
        if index is None:
            index = self.jobs[job_key] = JobIndex()
        return index

    def drop_job(self, job_key: str) -> None:
        self.jobs.pop(job_key, None)

    def add(self, job_key: str, task: Resource) -> None:
        index = self.job(job_key)
        task["_job"] = job_key
        task["_seq"] = index.next_seq
        index.next_seq += 1
        index.epoch += 1
        key = task["id"].lower()
        index.order.append((task["_seq"], key))
        index._tally(task, +1)
        if task["state"] == "active":
            heapq.heappush(index.ready, (task["_seq"], key))
        elif task["state"] == "completed":
            bisect.insort(index.completed, (norm_time(task["stateTransitionTime"]), key))

    def remove(self, task: Resource) -> None:
        index = self.job(task["_job"])
        index._tally(task, -1)
        index.epoch += 1
        index.stale_order += 1
        if task["state"] == "completed":
            index.stale_completed += 1
        index.waiting.discard(task["id"].lower())

    def move(self, task: Resource, state: str, *, result: str | None = None) -> None:
        """The one way a task changes state: previousState and times, its result when it completes,
        and every index of its job."""
        index = self.job(task["_job"])
        key = task["id"].lower()
        index._tally(task, -1)
        index.waiting.discard(key)  # an active task is looked at afresh
        if task["state"] == "completed":
            index.stale_completed += 1
            index.epoch += 1  # a dependency met may be unmet again
        now = iso(utcnow())
        task["previousState"] = task["state"]
        task["previousStateTransitionTime"] = task["stateTransitionTime"]
        task["state"] = state
        task["stateTransitionTime"] = now
        if result is not None:
            task["executionInfo"]["result"] = result
        index._tally(task, +1)
        if state == "active":
            heapq.heappush(index.ready, (task["_seq"], key))
        elif state == "completed":
            index.recheck = True
            entry = (norm_time(now), key)
            if index.completed and index.completed[-1] > entry:
                bisect.insort(index.completed, entry)  # the clock stepped back
            else:
                index.completed.append(entry)

    def rebuild(self, tasks: dict[str, dict[str, Resource]]) -> None:
        """After loading a saved state: every index from the tasks, in the order they were added."""
        self.jobs.clear()
        for job_key, job_tasks in tasks.items():
            self.job(job_key)
            for task in job_tasks.values():
                self.add(job_key, task)


# -- reading -------------------------------------------------------------------------------------


def next_ready(
    index: JobIndex, tasks: dict[str, Resource], met: Callable[[Resource], bool]
) -> Resource | None:
    """The first ready task (without taking it off the heap); `met(task)` says whether its
    dependencies are met. Stale entries are dropped and blocked tasks set aside on the way."""
    if index.recheck and index.waiting:
        for key in list(index.waiting):
            task = tasks.get(key)
            if task is None or task["state"] != "active":
                index.waiting.discard(key)
            elif met(task):
                index.waiting.discard(key)
                heapq.heappush(index.ready, (task["_seq"], key))
    index.recheck = False
    while index.ready:
        seq, key = index.ready[0]
        task = tasks.get(key)
        if task is None or task["state"] != "active" or task["_seq"] != seq or key in index.waiting:
            heapq.heappop(index.ready)
        elif not met(task):
            heapq.heappop(index.ready)
            index.waiting.add(key)
        else:
            return task
    return None


def in_order(
    index: JobIndex, tasks: dict[str, Resource], after: int | None
) -> Iterator[tuple[int, Resource]]:
    """(sequence, task) in the order tasks were added, after the sequence `after`."""
    _compact(index, tasks)
    start = 0 if after is None else bisect.bisect_right(index.order, (after, "\U0010ffff"))
    for seq, key in index.order[start:]:
        task = tasks.get(key)
        if task is not None and task["_seq"] == seq:
            yield seq, task


def completed_since(
    index: JobIndex, tasks: dict[str, Resource], since: str | None, after: list[str] | None
) -> Iterator[tuple[list[str], Resource]]:
    """([time, key], task) of completed tasks in time order, from `since` (normalized time, inclusive)
    or after the position `after`."""
    _compact(index, tasks)
    if after is not None:
        start = bisect.bisect_right(index.completed, (after[0], after[1]))
    else:
        start = bisect.bisect_left(index.completed, (since or "", ""))
    for when, key in index.completed[start:]:
        task = tasks.get(key)
        if task is None or task["state"] != "completed":
            continue
        if norm_time(task["stateTransitionTime"]) == when:
            yield [when, key], task


def task_source(
    index: JobIndex, tasks: dict[str, Resource]
) -> Callable[[str | None, Any], Iterator[tuple[Any, Resource]]]:
    """What Tasks_ListTasks pages through: completed tasks from the time a filter asks for
    ("state eq 'completed' and stateTransitionTime ge|gt X", as a monitor polls), else every task in
    the order they were added. The filter itself is still applied to each task."""

    def source(filter_text: str | None, after: Any) -> Iterator[tuple[Any, Resource]]:
        conjuncts = top_conjuncts(filter_text)
        if ("state", "eq", "completed") in conjuncts:
            bounds = [
                norm_time(v)
                for path, op, v in conjuncts
                if path == "stateTransitionTime" and op in ("ge", "gt") and isinstance(v, str)
            ]
            yield from completed_since(index, tasks, max(bounds, default=None), after)
        else:
            yield from in_order(index, tasks, after)

    return source


def _compact(index: JobIndex, tasks: dict[str, Resource]) -> None:
    if index.stale_order > 1000 and index.stale_order * 2 > len(index.order):
        index.order = [(t["_seq"], k) for k, t in tasks.items()]
        index.order.sort()
        index.stale_order = 0
    if index.stale_completed > 1000 and index.stale_completed * 2 > len(index.completed):
        index.completed = sorted(
            (norm_time(t["stateTransitionTime"]), k) for k, t in tasks.items() if t["state"] == "completed"
        )
        index.stale_completed = 0
