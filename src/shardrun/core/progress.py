"""What a run reports while it goes, as a Protocol. How it is shown (a live bar, log lines) is the
CLI's business (shardrun.cli.progress); the library only calls a ProgressView."""

from __future__ import annotations

from typing import Protocol


class ProgressView(Protocol):
    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None: ...

    def update(self, counts: dict[str, int]) -> None: ...

    def message(self, text: str) -> None: ...

    def transfer(self, label: str, done_bytes: int, total_bytes: int, *, finished: bool = False) -> None:
        """A long transfer (e.g. 'upload') has moved `done_bytes` of `total_bytes`. It may come from
        worker threads, before `start` or after `close`; the call with `finished` (done or failed) is
        its last."""
        ...

    def close(self) -> None:
        """The run is over; may be called more than once."""
        ...


class NullProgress:
    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None:
        pass

    def update(self, counts: dict[str, int]) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def transfer(self, label: str, done_bytes: int, total_bytes: int, *, finished: bool = False) -> None:
        pass

    def close(self) -> None:
        pass
