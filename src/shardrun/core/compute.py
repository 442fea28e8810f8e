"""Compute backends: where task attempts run.

A backend takes tasks, runs each with up to `retries` extra attempts (as Azure Batch does with
maxTaskRetryCount), and reports what happened as AttemptEvents. The client records those events in
the ledger; backends never touch it. A provider (core/provider.py) opens the backend of a run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from shardrun.core.store import Store

if TYPE_CHECKING:
    from shardrun.core.spec import JobSpec


@dataclass(frozen=True)
class TaskSpec:
    """One task to run. `input_key` ends with '/' when the piece is a folder.

    `segments`: for a piece that goes by reference, its bytes as segments of the run's sources
    (JSON, core/split_plan.py encode_segments); nothing is stored at `input_key` then, whose name
    is still the piece's name."""

    task_id: str
    input_key: str
    output_key: str
    first_attempt: int = 1
    segments: str | None = None


@dataclass(frozen=True)
class RunContext:
    """Everything a backend needs that is the same for every task of a run."""

    run_id: str
    command: list[str] | None
    store: Store
    scratch: Path
    env: dict[str, str] = field(default_factory=dict)
    config_key: str | None = None
    file_keys: tuple[str, ...] = ()
    retries: int = 3
    timeout: float | None = None
    concurrency: int = 1
    stdout_output: bool = False  # [app] stdout = "output": the app's stdout is its output file
    # Cloud resources the run has (kind, id): live ones, and every one it ever had. A backend
    # reports what it creates or deletes through on_resource(kind, id, deleted); the client records
    # it in the ledger, so cleanup finds each by its exact id.
    resources: tuple[tuple[str, str], ...] = ()
    resources_ever: tuple[tuple[str, str], ...] = ()
    on_resource: Callable[[str, str, bool], None] | None = None


@dataclass(frozen=True)
class AttemptEvent:
    """An attempt started or finished. `final` says no further attempt of this task will follow."""

    task_id: str
    attempt: int
    kind: str  # "started" | "finished"
    time: float
    worker: str = ""
    pid: int | None = None
    result: str = ""  # succeeded | failed | timeout | interrupted
    exit_code: int | None = None
    reason: str | None = None
    output_size: int | None = None
    final: bool = False
    stderr_tail: str | None = None  # the end of a failed attempt's stderr, kept in the ledger


class PieceMode(StrEnum):
    PER_PIECE = "per-piece"  # every piece is its own stored file
    BY_REFERENCE = "by-reference"  # the inputs are stored once; tasks get byte ranges of them


@dataclass(frozen=True)
class SplitFacts:
    """What a provider weighs to choose how a run's pieces travel (PassesPieces)."""

    kind: str  # the [split] kind
    input_bytes: int
    pieces: int
    files: int = 1  # input files: by reference, each is stored (and sent to each node) once


@runtime_checkable
class PassesPieces(Protocol):
    """A provider that can hand tasks their pieces by reference (as byte ranges of inputs stored
    once). Core asks it for runs whose splitter cuts byte ranges (lines, csv, json); a provider
    without this capability gets every piece as its own file."""

    def piece_mode(self, spec: JobSpec, facts: SplitFacts) -> PieceMode: ...


class ComputeBackend(Protocol):
    name: str
    detaches: bool  # True: Ctrl-C leaves the tasks running remotely; the next `run` re-attaches

    def start(self, ctx: RunContext) -> None:
        """Prepare to run tasks of this run (create or re-attach to what the run needs)."""
        ...

    def submit(self, tasks: Sequence[TaskSpec]) -> None:
        """Queue tasks. Returns once they are accepted, not when they finish."""
        ...

    def events(self, timeout: float) -> list[AttemptEvent]:
        """Events since the last call, waiting up to `timeout` seconds for the first one."""
        ...

    def stop(self) -> None:
        """Stop everything now (Ctrl-C): queued tasks are dropped, running attempts are ended."""
        ...

    def close(self) -> None:
        """Release what `start` took. Safe to call twice."""
        ...

    def notices(self) -> list[str]:
        """Messages for the user since the last call (a pool that shrank, a delete that failed)."""
        ...
