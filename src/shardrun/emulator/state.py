"""The emulator's account state: pools, jobs, tasks and nodes, in memory or saved in a folder.

Every resource is a plain dict in the service's wire format (camelCase), so a response is the dict
itself. Emulator bookkeeping lives under keys starting with "_" and never leaves the process. IDs are
case-insensitive in Batch, so the maps are keyed by the lower-cased ID.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .taskindex import TaskIndexes  # which builds on this module: the server makes one

Resource = dict[str, Any]
STATE_FILE = "state.json"
_TICKS_AT_EPOCH = 621355968000000000  # .NET ticks at 1970-01-01, the unit of Batch ETags


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def http_date(text: str) -> str:
    """An ISO timestamp from a resource as an RFC 1123 header value."""
    return format_datetime(parse_iso(text), usegmt=True)


# The spec's x-ms-secret properties (registry and user passwords, storage keys, SSH keys): the
# service takes them in and never sends them back. A test keeps this set equal to the spec's.
SECRET_PROPERTIES = frozenset({"password", "accountKey", "sasKey", "sshPrivateKey"})


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if k not in SECRET_PROPERTIES}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value  # JSON scalars are immutable


def wire(resource: Resource) -> Resource:
    """The resource as the service would send it: a deep copy without emulator bookkeeping and
    without secrets."""
    return {k: _public(v) for k, v in resource.items() if not k.startswith("_")}


class State:
    """All account state behind one lock. Callers hold `lock` while they read or change anything."""

    def __init__(self, index: TaskIndexes, folder: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.folder = folder
        self.pools: dict[str, Resource] = {}
        self.jobs: dict[str, Resource] = {}
        self.tasks: dict[str, dict[str, Resource]] = {}  # job key -> task key -> task
        self.nodes: dict[str, dict[str, Resource]] = {}  # pool key -> node id -> node
        self.index = index  # per job: counts, ready tasks, list orders (rebuilt on load, not saved)
        self._last_tick = 0
        self._dirty = False
        self._saved_at = 0.0
        self._save_seconds = 0.0  # how long the last save took
        if folder is not None and (folder / STATE_FILE).exists():
            self._load(folder / STATE_FILE)

    # -- versions --------------------------------------------------------------------------------

    def new_etag(self) -> str:
        with self.lock:
            ticks = max(time.time_ns() // 100 + _TICKS_AT_EPOCH, self._last_tick + 1)
            self._last_tick = ticks
            return f"0x{ticks:X}"

    def touch(self, resource: Resource) -> None:
        """A user-visible change: new ETag and lastModified (the service changes both together)."""
        resource["eTag"] = self.new_etag()
        resource["lastModified"] = iso(utcnow())
        self._dirty = True

    def changed(self) -> None:
        """A change that is not a new version of any resource (node or task progress)."""
        self._dirty = True

    # -- lookups ---------------------------------------------------------------------------------

    def job_tasks(self, job_id: str) -> dict[str, Resource]:
        return self.tasks.setdefault(job_id.lower(), {})

    def pool_nodes(self, pool_id: str) -> dict[str, Resource]:
        return self.nodes.setdefault(pool_id.lower(), {})

    # -- persistence -----------------------------------------------------------------------------

    def save_if_dirty(self, min_interval: float = 0.5) -> None:
        """Write the state file if something changed: at most every `min_interval` seconds, and never
        more than a twentieth of the time, as a big state (100,000 tasks) takes a while to write."""
        wait = max(min_interval, 20 * self._save_seconds) if min_interval else 0.0
        if self.folder is None or not self._dirty or time.monotonic() - self._saved_at < wait:
            return
        began = time.monotonic()
        with self.lock:
            text = json.dumps(
                {
                    "version": 1,
                    "pools": self.pools,
                    "jobs": self.jobs,
                    "tasks": self.tasks,
                    "nodes": self.nodes,
                    "lastTick": self._last_tick,
                }
            )
            self._dirty = False
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (STATE_FILE + ".tmp")
        # Owner-only: like the service's own store, the state holds the secrets it was given.
        with os.fdopen(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as out:
            out.write(text)
        os.replace(tmp, self.folder / STATE_FILE)
        self._saved_at = time.monotonic()
        self._save_seconds = self._saved_at - began

    def flush(self) -> None:
        self.save_if_dirty(min_interval=0.0)

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.pools = data["pools"]
        self.jobs = data["jobs"]
        self.tasks = data["tasks"]
        self.nodes = data["nodes"]
        self.index.rebuild(self.tasks)
        self._last_tick = int(data.get("lastTick", 0))
