"""The live progress display on a terminal (rich): the run's bar and one per transfer."""

from __future__ import annotations

import threading

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class BarProgress:
    """A rich live display: the run's bar (done/total, failed and running counts, elapsed time and
    ETA), and below it a bar with bytes/s for each transfer in flight. Thread-safe."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._tasks = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("[red]{task.fields[failed]} failed[/] · {task.fields[running]} running"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
        )
        self._bytes = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=self.console,
        )
        self._live = Live(console=self.console, refresh_per_second=10)
        self._lock = threading.RLock()
        self._run: TaskID | None = None
        self._transfers: dict[str, TaskID] = {}

    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None:
        with self._lock:
            self._run = self._tasks.add_task(
                run_id, total=total, completed=counts["succeeded"] + counts["failed"],
                failed=counts["failed"], running=counts["running"],
            )
            self._show()

    def update(self, counts: dict[str, int]) -> None:
        if self._run is not None:
            self._tasks.update(self._run, completed=counts["succeeded"] + counts["failed"],
                               failed=counts["failed"], running=counts["running"])

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def transfer(self, label: str, done_bytes: int, total_bytes: int, *, finished: bool = False) -> None:
        with self._lock:
            task = self._transfers.get(label)
            if finished:
                if task is not None:
                    self._bytes.remove_task(self._transfers.pop(label))  # gone from the screen
                    self._show()
                return
            if task is None:
                self._transfers[label] = self._bytes.add_task(label, total=total_bytes,
                                                              completed=done_bytes)
                self._show()
            else:
                self._bytes.update(task, completed=done_bytes, total=total_bytes)

    def close(self) -> None:
        with self._lock:
            self._live.stop()  # the run's bar stays on the screen as it ended
            if self._run is not None:
                self._tasks.remove_task(self._run)
                self._run = None
            self._show()  # transfers may still be going (e.g. after the run, the merge)

    def _show(self) -> None:
        """Show what is going on: the run's bar, the transfers in flight, or nothing."""
        shown = ([self._tasks] if self._run is not None else []) + ([self._bytes] if self._transfers else [])
        if shown:
            self._live.update(Group(*shown))
            self._live.start(refresh=True)  # draw at once: a no-op when it is showing
        elif self._live.is_started:
            self._live.update(Group())
            self._live.stop()
