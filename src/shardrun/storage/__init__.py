"""Storage: the shared channel between the client and its tasks.

Backends are registered by name; a missing optional backend gives an install hint instead of an
ImportError. Keys follow `shardrun.layout`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import BackendNotAvailable, UsageError


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


# name -> (module, class, install hint)
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "local": ("shardrun.storage.local", "LocalStore", ""),
    "memory": ("shardrun.storage.memory", "MemoryStore", ""),
    "blob": ("shardrun.storage.blob", "open_blob_store", "pip install 'shardrun[azure]'"),
}


def register_store(name: str, module: str, cls: str, hint: str = "") -> None:
    _BACKENDS[name] = (module, cls, hint)


def store_names() -> list[str]:
    return sorted(_BACKENDS)


def open_store(name: str, **options: Any) -> Store:
    """Open a storage backend by name, e.g. open_store('local', root=Path(...))."""
    try:
        module_name, cls_name, hint = _BACKENDS[name]
    except KeyError:
        raise UsageError(
            f"unknown storage backend {name!r}; known: {', '.join(store_names())}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        extra = f"; install it with: {hint}" if hint else ""
        raise BackendNotAvailable(f"storage backend {name!r} is not available ({err}){extra}") from err
    store: Store = getattr(module, cls_name)(**options)
    return store
