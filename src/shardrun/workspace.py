"""The client's home: the ledger, the local store and per-run scratch folders.

Default: $SHARDRUN_HOME, else $XDG_STATE_HOME/shardrun, else ~/.local/state/shardrun. One home holds
every run of the user, so `shardrun status RUN` works from any folder.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

from .ledger import Ledger
from .spec import JobSpec
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
