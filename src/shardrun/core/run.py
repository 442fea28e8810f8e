"""The Run handle: one run, opened once and passed through the pipeline.

It holds the ledger row, the spec the run started with (the job file may have changed since), and
opens the run's store and providers once, on first use.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from shardrun.core import provider
from shardrun.core.errors import JobFileError, UsageError
from shardrun.core.ledger import Ledger, RunRow
from shardrun.core.spec import JobSpec, load_spec, parse_spec
from shardrun.core.states import RunState
from shardrun.core.store import KeepsHeartbeat, Store
from shardrun.core.workspace import Workspace


@dataclass
class Run:
    ws: Workspace
    row: RunRow
    spec: JobSpec
    last_beat: float = 0.0
    edits: list[str] = field(default_factory=list)  # job-file edits this command applies
    _beats: KeepsHeartbeat | Literal[False] | None = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return self.row.run_id

    @property
    def ledger(self) -> Ledger:
        return self.ws.ledger

    @property
    def state(self) -> RunState:
        return RunState(self.row.status)

    @property
    def scratch(self) -> Path:
        return self.ws.scratch(self.run_id)

    @cached_property
    def store(self) -> Store:
        return self.ws.store(self.row.storage, self.spec)

    @cached_property
    def compute_provider(self) -> provider.Provider:
        return provider.for_compute(self.row.backend)

    @cached_property
    def store_provider(self) -> provider.Provider:
        return provider.for_store(self.row.storage)

    def set_state(self, state: RunState, message: str | None = None) -> None:
        self.ledger.set_run_status(self.run_id, state, message)
        self.refresh()
        self.beat()

    def beat(self) -> None:
        """Tell other machines the run's state and that its client is alive (stores that can)."""
        if self._beats is None:
            store = self.store
            self._beats = store if isinstance(store, KeepsHeartbeat) else False
        if self._beats is not False:
            with contextlib.suppress(Exception):  # advice for gc; never worth failing a run over
                self._beats.heartbeat(self.run_id, self.row.status)
        self.last_beat = time.monotonic()  # also without a heartbeat: the poll loop asks once a minute

    def refresh(self) -> None:
        row = self.ledger.get_run(self.run_id)
        assert row is not None
        self.row = row


def spec_of(row: RunRow) -> JobSpec:
    """The job spec as it was when the run started."""
    job_path = Path(row.job_path)
    return parse_spec(json.loads(row.spec_json), job_path, job_path.parent)


# What an edit of the job file may change in a run that exists: how it runs and how it merges.
# Anything else ([app], [split], where the pieces live, the runtime) would change the pieces or
# what the app does to them, so the run keeps what it started with.
RUN_KEYS_THAT_APPLY = ("timeout", "retries", "concurrency", "allow_failures")


def with_job_file_as_it_is(stored: JobSpec, job_path: Path) -> tuple[JobSpec, list[str]]:
    """The run's spec with [run] (timeout, retries, concurrency, allow_failures) and [merge] taken
    from the job file as it is now; the edits that apply, named. A job file that is gone, or no
    longer loads, changes nothing."""
    try:
        current = load_spec(job_path)
    except JobFileError:
        return stored, []
    keys = set(RUN_KEYS_THAT_APPLY)
    now, before = current.run.model_dump(include=keys), stored.run.model_dump(include=keys)
    run_changes = {k: now[k] for k in RUN_KEYS_THAT_APPLY if now[k] != before[k]}
    edits = [f"[run] {k}" for k in run_changes]
    update: dict[str, object] = {}
    if run_changes:
        update["run"] = stored.run.model_copy(update=run_changes)
    if current.merge != stored.merge:
        update["merge"] = current.merge
        edits.append("[merge]")
    return (stored.model_copy(update=update) if update else stored), edits


def open_run(ws: Workspace, run_id: str, *, job_file_edits: bool = False) -> Run:
    """Open a recorded run. With `job_file_edits`, the edits of the job file that may apply to an
    existing run (RUN_KEYS_THAT_APPLY and [merge]) are taken, and `edits` names them."""
    row = ws.ledger.get_run(run_id)
    if row is None:
        raise UsageError(f"no run {run_id!r} in {ws.ledger.path} (see `shardrun runs`)")
    spec = spec_of(row)
    edits: list[str] = []
    if job_file_edits:
        spec, edits = with_job_file_as_it_is(spec, Path(row.job_path))
    run = Run(ws, row, spec)
    run.edits = edits
    return run
