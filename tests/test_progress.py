"""Progress goes through one ProgressView: the library reports (task counts, messages, the bytes of
long uploads) and the CLI draws. A Blob upload reports to the view it was given and draws nothing."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

from rich.console import Console

from shardrun.cli.progress import LineProgress
from shardrun.cli.progress_bar import BarProgress
from shardrun.core.pipeline import run_job
from shardrun.core.progress import NullProgress, ProgressView
from shardrun.core.store import ReportsTransfers
from shardrun.providers.azure.blob import open_blob_store

from .fixtures.azurite import DEV_KEY, Azurite
from .helpers import write_job

MIB = 1024 * 1024
COUNTS = {"succeeded": 0, "failed": 0, "running": 0, "pending": 3}


class RecordingView(NullProgress):
    """Remembers every transfer report, from whichever thread it comes."""

    def __init__(self) -> None:
        self.transfers: list[tuple[str, int, int, bool]] = []
        self._lock = threading.Lock()

    def transfer(self, label: str, done_bytes: int, total_bytes: int, *, finished: bool = False) -> None:
        with self._lock:
            self.transfers.append((label, done_bytes, total_bytes, finished))


def _check_one_transfer(reports: list[tuple[str, int, int, bool]], total: int) -> None:
    assert reports, "no transfer was reported"
    assert len({label for label, *_ in reports}) == 1
    assert all(t == total for _, _, t, _ in reports)
    done = [d for _, d, _, _ in reports]
    assert done == sorted(done) and done[0] == 0  # in order, from nothing
    assert [f for *_, f in reports] == [False] * (len(reports) - 1) + [True]  # finished once, last
    assert done[-1] == total


def test_the_bar_draws_a_transfer_with_bytes_per_second_beside_the_run() -> None:
    screen = io.StringIO()
    bar = BarProgress(Console(file=screen, force_terminal=True, width=120))
    bar.start("run-1", 3, COUNTS)
    # The bytes/s are drawn by the bar's own refresh thread (10 times a second) while the transfer
    # is in flight, and the finished transfer leaves the screen: so report until a redraw showed a
    # speed, however late a busy machine runs that thread (bounded), rather than for a fixed time.
    speed = re.compile(r"[\d.]+ ?[kM]B/s")
    done, total = 0, 10_000 * MIB  # more than the loop can report by its bound
    deadline = time.monotonic() + 60
    while not speed.search(screen.getvalue()) and time.monotonic() < deadline:
        bar.transfer("upload of 3 file(s)", done, total)
        done += MIB
        time.sleep(0.05)  # lets the bar take speed samples
    bar.transfer("upload of 3 file(s)", total, total, finished=True)
    bar.update({**COUNTS, "succeeded": 3, "pending": 0})
    bar.close()
    bar.close()  # a second close (the CLI closes on every path) changes nothing
    text = screen.getvalue()
    assert "upload of 3 file(s)" in text and speed.search(text)
    assert "3/3" in text and "run-1" in text


def test_a_transfer_before_the_run_starts_gets_a_bar_of_its_own() -> None:
    screen = io.StringIO()
    bar = BarProgress(Console(file=screen, force_terminal=True, width=120))
    bar.transfer("upload of 1 file(s)", 0, 4 * MIB)  # the pieces go up before the run's bar exists
    bar.transfer("upload of 1 file(s)", 4 * MIB, 4 * MIB, finished=True)
    bar.start("run-2", 3, COUNTS)
    bar.close()
    assert "upload of 1 file(s)" in screen.getvalue() and "run-2" in screen.getvalue()


def test_log_lines_for_a_transfer() -> None:
    stream = io.StringIO()
    lines = LineProgress(stream, every=3600)
    lines.transfer("upload of 2 file(s)", 0, 3_000_000)
    lines.transfer("upload of 2 file(s)", 1_000_000, 3_000_000)  # within `every`: no line
    lines.transfer("upload of 2 file(s)", 3_000_000, 3_000_000, finished=True)
    said = stream.getvalue().splitlines()
    assert len(said) == 2
    assert said[0].endswith("upload of 2 file(s): 3.0 MB")
    assert re.search(r"upload of 2 file\(s\): done, 3\.0 MB of 3\.0 MB in [\d.]+s$", said[1])


def test_a_blob_upload_reports_its_bytes_to_the_view_it_was_given(azurite: Azurite, tmp_path: Path) -> None:
    store = open_blob_store(connection_string=azurite.connection_string, block_size=256 * 1024,
                            max_concurrency=4)
    assert isinstance(store, ReportsTransfers)
    view = RecordingView()
    store.report_transfers(view)
    files = []
    for i, size in enumerate((900_000, 700_000, 10)):  # blocks and single puts, from several threads
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * size)
        files.append((f"progress-run-1/inputs/f{i}", path))
    store.put_files(files)
    _check_one_transfer(view.transfers, 1_600_010)
    assert view.transfers[0][0] == "upload of 3 file(s)"
    view.transfers.clear()
    store.put_files(files)  # already there: skipped, and still reported as done
    _check_one_transfer(view.transfers, 1_600_010)
    view.transfers.clear()
    store.put_files(files[2:])  # 10 bytes: too short to be worth a bar
    assert view.transfers == []


def test_a_run_shows_the_upload_of_its_pieces(azurite: Azurite, tmp_path: Path, shardrun_home: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"{i:07d}\n" for i in range(160_000)))  # 1.28 MB
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "AZURE_STORAGE_KEY").write_text(DEV_KEY + "\n")
    (secrets / "AZURE_STORAGE_KEY").chmod(0o600)
    job = write_job(tmp_path, {
        "app": {"command": ["cp", "{input}", "{output}"]},
        "split": {"input": "big.txt", "method": "lines", "per_task": 80_000},
        "merge": {"method": "concat", "output": "out.txt"},
        "run": {"storage": "blob", "concurrency": 2},
        "storage": {"account_url": azurite.account_url, "max_concurrency": 4},
        "secrets": {"source": "file", "path": "secrets"},
    })
    view = RecordingView()
    progress: ProgressView = view
    result = run_job(job, progress=progress)
    assert result.ok and (tmp_path / "out.txt").read_bytes() == (tmp_path / "big.txt").read_bytes()
    pieces = [t for t in view.transfers if t[0] == "upload of 2 file(s)"]
    _check_one_transfer(pieces, (tmp_path / "big.txt").stat().st_size)
