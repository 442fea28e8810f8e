"""Progress while a run goes: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressView(Protocol):
    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None: ...
    def update(self, counts: dict[str, int]) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


def _summary(counts: dict[str, int]) -> str:
    return (f"{counts['succeeded']} done, {counts['failed']} failed, "
            f"{counts['running']} running, {counts['pending']} waiting")


class NullProgress:
    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None:
        pass

    def update(self, counts: dict[str, int]) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress:
    """For logs and CI: one line every `every` seconds, and one per notable event."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._last_text = ""
        self._total = 0

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

    def close(self) -> None:
        pass

    def _write(self, text: str) -> None:
        self._last = time.monotonic()
        print(f"[shardrun {time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)


class BarProgress:
    """A rich live bar: done/total, failed and running counts, elapsed time and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("[red]{task.fields[failed]} failed[/] · {task.fields[running]} running"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task_id: TaskID | None = None

    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None:
        self._progress.start()
        self._task_id = self._progress.add_task(
            run_id, total=total, completed=counts["succeeded"] + counts["failed"],
            failed=counts["failed"], running=counts["running"],
        )

    def update(self, counts: dict[str, int]) -> None:
        if self._task_id is not None:
            self._progress.update(
                self._task_id, completed=counts["succeeded"] + counts["failed"],
                failed=counts["failed"], running=counts["running"],
            )

    def message(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._progress.stop()


def progress_for(stream: TextIO | None = None, quiet: bool = False) -> ProgressView:
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if stream.isatty():
        return BarProgress(Console(file=stream))
    return LineProgress(stream)
