"""The client's home: the ledger, the local store and per-run scratch folders.

Default: $SHARDRUN_HOME, else $XDG_STATE_HOME/shardrun, else ~/.local/state/shardrun. One home holds
every run of the user, so `shardrun status RUN` works from any folder.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import UsageError
from .ledger import Ledger, RunRow
from .spec import JobSpec, parse_spec
from .storage import Store, open_store


def default_home() -> Path:
    if os.environ.get("SHARDRUN_HOME"):
        return Path(os.environ["SHARDRUN_HOME"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "shardrun"


class Workspace:
    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).expanduser() if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.home / "ledger.sqlite")

    def scratch(self, run_id: str) -> Path:
        """Per-run local scratch: task folders, the merge folder. Safe to delete after the run."""
        return self.home / "work" / run_id

    def store(self, name: str, spec: JobSpec | None = None, **options: Any) -> Store:
        """Open a store; `spec` supplies the blob store's [storage] and [secrets] settings."""
        if name == "local":
            options.setdefault("root", self.home / "store")
        if name == "blob" and spec is not None:
            options.setdefault("settings", spec.storage)
            options.setdefault("secrets", spec.secrets)
            options.setdefault("base_dir", spec.base_dir)
        return open_store(name, **options)

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()


def spec_for_run(run: RunRow) -> JobSpec:
    """The job spec as it was when the run started (the job file may have changed since)."""
    job_path = Path(run.job_path)
    return parse_spec(json.loads(run.spec_json), job_path, job_path.parent)


def run_store(ws: Workspace, run: RunRow) -> Store:
    """The run's store, opened with the storage settings the run started with."""
    return ws.store(run.storage, spec=spec_for_run(run))


def get_run(ws: Workspace, run_id: str) -> RunRow:
    run = ws.ledger.get_run(run_id)
    if run is None:
        raise UsageError(f"no run {run_id!r} in {ws.ledger.path} (see `shardrun runs`)")
    return run
