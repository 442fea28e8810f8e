"""Storage: the shared channel between the client and its tasks.

A provider (core/provider.py) opens the store of a run by name. Keys follow `shardrun.core.layout`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from shardrun.core.progress import ProgressView


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@runtime_checkable
class Store(Protocol):
    """What every storage backend does. One contract test suite runs against each of them."""

    name: str

    def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        """Store `src` under `key` (replacing it) and return its size. `move` may consume `src`."""
        ...

    def put_files(self, items: Sequence[tuple[str, Path]], *, move: bool = False) -> None:
        """Store many files; backends may do this concurrently."""
        ...

    def get_files(self, items: Sequence[tuple[str, Path]]) -> None:
        """Fetch many objects to local paths; backends may do this concurrently."""
        ...

    def get_file(self, key: str, dest: Path) -> int:
        """Write the object to `dest` and return its size. Missing key: FileNotFoundError."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def size(self, key: str) -> int | None:
        """Size in bytes, or None when the key does not exist."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""
        ...

    def delete_namespace(self, namespace: str) -> bool:
        """Delete exactly one run's namespace. True if something was deleted."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file holding the object, if the store has one (lets local tasks skip a copy)."""
        ...


class TaskAccess(Protocol):
    """One attempt's own, least-privilege access to the store (Blob: SAS URLs for one blob each)."""

    def fetch_input(self, folder: Path) -> Path:
        """Download the task's input into `folder`; return the path the app gets as INPUT_PATH."""
        ...

    def put_output(self, path: Path) -> int: ...

    def put_log(self, stream: str, path: Path) -> None: ...


@runtime_checkable
class GrantsTaskAccess(Protocol):
    """A store that gives each task access of its own instead of the store's credential, as an
    Azure Batch node gets. A local backend on such a store moves task files the same way."""

    def task_access(self, *, input_key: str, output_key: str, log_keys: dict[str, str],
                    timeout: float | None) -> TaskAccess: ...

    def fetch_shared(self, key: str, dest: Path, timeout: float | None) -> None:
        """Download a read-only file every task gets (the config, [app] files) through its own URL."""
        ...


@runtime_checkable
class KeepsHeartbeat(Protocol):
    """A store other machines can see (Blob): the run's state and a heartbeat go where `shardrun gc`
    on any machine reads them, so no machine deletes a run that is alive or can be resumed."""

    def heartbeat(self, namespace: str, state: str) -> None: ...


@runtime_checkable
class ReportsTransfers(Protocol):
    """A store whose long transfers (a network upload) report their bytes to the run's ProgressView."""

    def report_transfers(self, view: ProgressView) -> None: ...
