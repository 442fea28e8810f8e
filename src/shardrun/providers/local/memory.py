"""An in-memory store for fast unit tests. It keeps the same contract as the real stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from shardrun.core.layout import split_key
from shardrun.core.store import ObjectInfo


class MemoryStore:
    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_file(self, key: str, src: Path, *, move: bool = False) -> int:
        data = Path(src).read_bytes()
        self.put_bytes(key, data)
        if move:
            Path(src).unlink()
        return len(data)

    def put_files(self, items: Sequence[tuple[str, Path]], *, move: bool = False) -> None:
        for key, src in items:
            self.put_file(key, src, move=move)

    def get_files(self, items: Sequence[tuple[str, Path]]) -> None:
        for key, dest in items:
            self.get_file(key, dest)

    def get_file(self, key: str, dest: Path) -> int:
        data = self.get_bytes(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return len(data)

    def put_bytes(self, key: str, data: bytes) -> None:
        split_key(key)
        with self._lock:
            self._data[key] = bytes(data)

    def get_bytes(self, key: str) -> bytes:
        with self._lock:
            if key not in self._data:
                raise FileNotFoundError(key)
            return self._data[key]

    def size(self, key: str) -> int | None:
        with self._lock:
            data = self._data.get(key)
        return None if data is None else len(data)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((k, len(v)) for k, v in self._data.items() if k.startswith(prefix))
        for key, size in items:
            yield ObjectInfo(key, size)

    def delete_namespace(self, namespace: str) -> bool:
        if not namespace or "/" in namespace:
            raise ValueError(f"bad namespace {namespace!r}")
        with self._lock:
            doomed = [k for k in self._data if split_key(k)[0] == namespace]
            for k in doomed:
                del self._data[k]
        return bool(doomed)

    def local_path(self, key: str) -> Path | None:
        return None
