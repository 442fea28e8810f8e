"""The client's home: the ledger, the local store and per-run scratch folders.

Default: $SHARDRUN_HOME, else $XDG_STATE_HOME/shardrun, else ~/.local/state/shardrun. One home holds
every run of the user, so `shardrun status RUN` works from any folder.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from shardrun.core import provider
from shardrun.core.ledger import Ledger
from shardrun.core.spec import JobSpec
from shardrun.core.store import Store


def default_home() -> Path:
    if os.environ.get("SHARDRUN_HOME"):
        return Path(os.environ["SHARDRUN_HOME"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "shardrun"


def resolve_home(home: Path | str | None = None) -> Path:
    """The home a command uses: the one given, else the default; always absolute (tasks run in
    folders of their own, where a relative home means nothing)."""
    return (Path(home).expanduser() if home else default_home()).absolute()


class Workspace:
    def __init__(self, home: Path | str | None = None) -> None:
        self.home = resolve_home(home)
        self.home.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.home / "ledger.sqlite")

    def scratch(self, run_id: str) -> Path:
        """Per-run local scratch: task folders, the merge folder. Safe to delete after the run."""
        return self.home / "work" / run_id

    def store(self, name: str, spec: JobSpec | None = None) -> Store:
        """Open a store by name through its provider; `spec` supplies the provider's settings."""
        return provider.for_store(name).open_store(name, spec, self.home)

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()
