"""Calibrate the planner's node start-up and per-task overhead from runs the ledger recorded.

The model (plan.py) needs two figures this machine cannot measure: how long after a run starts its
nodes take their first task (start-up), and what each task costs beyond the app's own time (per-task
overhead). Runs recorded on the same backend (for Azure Batch, the same Batch account: an emulator
rehearsal calibrates plans for the emulator, real runs plans for Azure) hold both:

- **start-up**: from the run's start to the first attempt on each node (the median over its nodes),
  less the autoscale lag the model adds on its own. It counts what the model's start-up stands for on
  that backend: the split and upload, the pool's creation and the nodes' boot;
- **per-task overhead**: the gaps between one attempt's end and the next attempt's start on the same
  task slot (scheduling, the next task's set-up), plus, for earlier runs of the same app, the time
  inside each attempt beyond what the app took here (downloading the input, uploading the output).

Medians, so one slow node or the idle gap before a retry moves nothing. Without history the caller
keeps its defaults, and `how` says which it used.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shardrun.core.errors import JobFileError
from shardrun.core.ledger import Ledger, RunRow
from shardrun.core.run import spec_of
from shardrun.core.spec import JobSpec
from shardrun.planning.plan import fmt_duration
from shardrun.planning.workload import Workload
from shardrun.providers.azure.settings import pool_settings

HISTORY_RUNS = 5  # the newest runs that calibrate a plan
SHOWN_RUNS = 3  # named in `how`
BUILT_IN = ("lines", "files", "json", "csv")  # splitters whose pieces hold exactly per_task units


@dataclass(frozen=True)
class Calibration:
    """Figures read off earlier runs; None where the history holds nothing to read them from."""

    startup: float | None
    task_overhead: float | None
    runs: tuple[str, ...]
    how: str  # one line for the user: which runs, or why the defaults


def place_of(spec: JobSpec, backend: str) -> str:
    """Where runs of this job go: the backend, and for Azure Batch its account."""
    batch = pool_settings(spec, backend)
    return f"{backend} at {batch.account_url}" if batch is not None else backend


def _slots_per_worker(spec: JobSpec, backend: str) -> int:
    """A Batch attempt names its node, which has task slots; elsewhere a worker is one slot."""
    batch = pool_settings(spec, backend)
    return batch.task_slots_per_node if batch is not None else 1


def _lag(spec: JobSpec, backend: str) -> float:
    batch = pool_settings(spec, backend)
    return batch.autoscale_interval if batch is not None and batch.autoscale else 0.0


def _timed(attempts: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Attempts whose span is known: not lost (its end is when the next client noticed), not one
    Batch retried on its own (recorded with no length), not still running."""
    return [a for a in attempts if a["ended_at"] is not None and a["result"] not in ("lost", "running")
            and a["ended_at"] > a["started_at"]]


def startup_of(row: RunRow, attempts: Sequence[Mapping[str, Any]], lag: float) -> float | None:
    """From the run's start to the first attempt on each node, the median over nodes, less `lag`
    (any attempt: one that was lost still started when it says)."""
    first: dict[str, float] = {}
    for a in attempts:
        node = str(a["worker"] or "").split("/", 1)[0]
        if node:
            first[node] = min(first.get(node, a["started_at"]), a["started_at"])
    if not first:
        return None
    return max(0.0, statistics.median(first.values()) - row.created_at - lag)


def slot_gaps(attempts: Sequence[Mapping[str, Any]], slots_per_worker: int) -> list[float]:
    """The gaps between one attempt's end and the next one's start on the same task slot.

    A worker with several slots (a Batch node) is read as that many lanes: each attempt goes to the
    lane that came free last before it started, or to a lane not used yet.
    """
    gaps: list[float] = []
    lanes: dict[str, list[float]] = {}  # worker -> when each of its used slots came free
    for a in sorted(_timed(attempts), key=lambda a: a["started_at"]):
        ends = lanes.setdefault(str(a["worker"] or ""), [])
        free = [i for i, end in enumerate(ends) if end <= a["started_at"]]
        if free:
            i = max(free, key=lambda i: ends[i])
            gaps.append(a["started_at"] - ends[i])
            ends[i] = a["ended_at"]
        elif len(ends) < slots_per_worker:
            ends.append(a["ended_at"])
        else:  # more at once than the slots allow (an edited pool): take the lane that ends first
            ends[ends.index(min(ends))] = a["ended_at"]
    return gaps


def beyond_the_app(attempts: Sequence[Mapping[str, Any]], units_of: Mapping[str, int],
                   work: Workload) -> list[float]:
    """For each succeeded attempt of a task with known units: its length less the app's time for
    those units as measured here."""
    out = []
    for a in _timed(attempts):
        units = units_of.get(a["task_id"])
        if a["result"] == "succeeded" and units is not None:
            app = work.app_start_seconds + units * work.unit_seconds
            out.append(a["ended_at"] - a["started_at"] - app)
    return out


def _units_of_tasks(ledger: Ledger, run: RunRow, spec: JobSpec) -> dict[str, int]:
    """Units per task of a run of a built-in splitter: per_task each, but the last (what is left)."""
    per_task = spec.split.per_task
    if spec.split.kind not in BUILT_IN or per_task == "auto":
        return {}
    tasks = ledger.tasks(run.run_id)
    last = max((t.idx for t in tasks), default=0)
    return {t.task_id: per_task for t in tasks if t.idx != last}


def _history(ledger: Ledger, spec: JobSpec, backend: str) -> tuple[list[tuple[RunRow, JobSpec]], bool]:
    """The newest runs on the same backend and account, of this job file if it has any; and
    whether they are of this job file."""
    place = place_of(spec, backend)
    found: list[tuple[RunRow, JobSpec]] = []
    for row in ledger.runs():
        if row.backend != backend:
            continue
        try:
            old = spec_of(row)
        except JobFileError:
            continue  # written by another shardrun, or a provider that is gone
        if place_of(old, backend) == place:
            found.append((row, old))
    own = [(row, old) for row, old in found if spec.source is not None
           and row.job_path == str(spec.source.resolve())]
    return (own or found)[:HISTORY_RUNS], bool(own)


def calibrate(ledger: Ledger, spec: JobSpec, work: Workload, *, backend: str) -> Calibration:
    """Start-up and per-task overhead from the newest runs of this job (else of any job) recorded on
    `backend`, at the same account; `work` is the app's measured time, to tell it from the overhead."""
    history, same_job = _history(ledger, spec, backend)
    starts: list[float] = []
    gaps: list[float] = []
    extra: list[float] = []
    used: list[str] = []
    for row, old in history:
        attempts = ledger.attempts(row.run_id)
        if not _timed(attempts):
            continue
        used.append(row.run_id)
        start = startup_of(row, attempts, _lag(old, backend))
        if start is not None:
            starts.append(start)
        gaps += slot_gaps(attempts, _slots_per_worker(old, backend))
        if same_job and old.app == spec.app:  # the same app: what it took here is comparable
            extra += beyond_the_app(attempts, _units_of_tasks(ledger, row, old), work)
    where = place_of(spec, backend)
    if not used:
        return Calibration(None, None, (), f"defaults: no earlier run on {where} in the ledger")
    startup = statistics.median(starts) if starts else None
    overhead = None
    parts = []
    if gaps or extra:
        gap = statistics.median(gaps) if gaps else 0.0
        inside = max(0.0, statistics.median(extra)) if extra else 0.0
        overhead = gap + inside
        parts.append(f"{fmt_duration(gap)} between tasks"
                     + (f" + {fmt_duration(inside)} in each beyond the app's time here" if extra else ""))
    named = ", ".join(used[:SHOWN_RUNS]) + (" ..." if len(used) > SHOWN_RUNS else "")
    whose = "this job" if same_job else "any job"
    how = (f"calibrated from {len(used)} earlier run{'s' if len(used) > 1 else ''} of {whose} on "
           f"{where} ({named})" + (f": overhead {parts[0]}" if parts else ""))
    if overhead is None:
        how += "; no task followed another on a slot: default per-task overhead"
    return Calibration(startup, overhead, tuple(used), how)
