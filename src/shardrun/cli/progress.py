"""How the CLI shows a run's progress: a live bar on a terminal, plain log lines otherwise.

Both are ProgressViews (shardrun.core.progress): the library reports task counts, messages and the
bytes of long transfers, and draws nothing itself.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from shardrun.core.progress import NullProgress, ProgressView


def _summary(counts: dict[str, int]) -> str:
    return (f"{counts['succeeded']} done, {counts['failed']} failed, "
            f"{counts['running']} running, {counts['pending']} waiting")


def decimal(size: int) -> str:
    """Bytes as rich writes them; imported here so plain line output needs no rich at start-up."""
    from rich.filesize import decimal as rich_decimal

    return rich_decimal(size)


class LineProgress:
    """For logs and CI: one line every `every` seconds, and one per notable event."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._last_text = ""
        self._total = 0
        self._lock = threading.Lock()  # transfers report from worker threads
        self._transfers: dict[str, tuple[float, float]] = {}  # label -> (started, last line)

    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None:
        self._total = total
        self._write(f"run {run_id}: {total} tasks; {_summary(counts)}")

    def update(self, counts: dict[str, int]) -> None:
        now = time.monotonic()
        text = _summary(counts)
        if now - self._last >= self.every and text != self._last_text:
            self._write(f"{counts['succeeded'] + counts['failed']}/{self._total}: {text}")
            self._last_text = text

    def message(self, text: str) -> None:
        self._write(text)

    def transfer(self, label: str, done_bytes: int, total_bytes: int, *, finished: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            began, said = self._transfers.get(label, (now, 0.0))
            if finished:
                self._transfers.pop(label, None)
                verb = "done" if done_bytes >= total_bytes else "stopped"
                self._write(f"{label}: {verb}, {decimal(done_bytes)} of {decimal(total_bytes)} in "
                            f"{now - began:.1f}s")
            elif label not in self._transfers:
                self._transfers[label] = (now, now)
                self._write(f"{label}: {decimal(total_bytes)}")
            elif now - said >= self.every:
                self._transfers[label] = (began, now)
                self._write(f"{label}: {decimal(done_bytes)} of {decimal(total_bytes)}")

    def close(self) -> None:
        pass

    def _write(self, text: str) -> None:
        self._last = time.monotonic()
        print(f"[shardrun {time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)


def progress_for(stream: TextIO | None = None, quiet: bool = False) -> ProgressView:
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if stream.isatty():
        from rich.console import Console  # rich's live display costs an import: only on a terminal

        from shardrun.cli.progress_bar import BarProgress

        return BarProgress(Console(file=stream))
    return LineProgress(stream)
