"""The run report: real runs (with failures and retries) and a 10,000-attempt ledger, checked as HTML
and in headless Chromium (one bar per attempt, no console errors, nothing fetched, a screenshot)."""

from __future__ import annotations

import heapq
import json
import os
import random
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shardrun.cli import main
from shardrun.core import layout
from shardrun.core.ledger import RunRow
from shardrun.core.pipeline import run_job
from shardrun.core.spec import parse_spec
from shardrun.core.states import retry_flags
from shardrun.core.workspace import Workspace
from shardrun.planning.report import collect, write_report

from .ledger_records import Attempt, batch_job, local_job, record_run

ARTIFACTS = Path(os.environ.get("SHARDRUN_ARTIFACTS") or Path(__file__).parent / "artifacts")

FLAKY_APP = """
import os, sys, time
task = int(os.environ["SHARDRUN_TASK_ID"].split("-")[1])
attempt = int(os.environ["SHARDRUN_ATTEMPT"])
time.sleep(0.02 * (task % 4))
if task % 7 == 0:
    print(f"task {task}: bad record <{task}> & more", file=sys.stderr)
    sys.exit(3)
if task % 3 == 0 and attempt == 1:
    print("transient failure", file=sys.stderr)
    sys.exit(1)
open(sys.argv[2], "w").write(open(sys.argv[1]).read().upper())
"""


def make_job(folder: Path, lines: int, command: str, concurrency: int = 3) -> Path:
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(FLAKY_APP)
    (folder / "in.txt").write_text("".join(f"{i}\n" for i in range(lines)))
    job = folder / "job.toml"
    job.write_text(f'[job]\nname = "flaky"\n[app]\ncommand = {command}\n[split]\ninput = "in.txt"\n'
                   f'[merge]\noutput = "out.txt"\n'
                   f"[run]\nconcurrency = {concurrency}\nretries = 1\nallow_failures = true\n")
    return job


@pytest.fixture
def flaky_run(tmp_path: Path, shardrun_home: Path) -> str:
    """A real local run of 30 tasks: 4 always fail (7, 14, 21, 28), 9 fail once then succeed."""
    command = json.dumps([sys.executable, "app.py", "{input}", "{output}"])
    result = run_job(make_job(tmp_path / "job", 30, command))
    assert result.counts["failed"] == 4
    return result.run_id


def ledger_attempts(run_id: str) -> list[dict[str, Any]]:
    ws = Workspace()
    try:
        return ws.ledger.attempts(run_id)
    finally:
        ws.close()


class _Refs(HTMLParser):
    """Every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action", "xlink:href"):
                self.refs.append((tag, name, value or ""))


def timeline_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>', html, re.S)
    assert m, "no timeline data"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


# -- the file ---------------------------------------------------------------------------------------
def test_report_of_a_real_run(flaky_run: str, tmp_path: Path) -> None:
    path = write_report(flaky_run, tmp_path / "r.html")
    html = path.read_text()
    attempts = ledger_attempts(flaky_run)
    data = timeline_data(html)
    assert len(data["s"]) == len(attempts) == 30 + 4 + 9
    assert sorted(data["workers"]) == ["local-1", "local-2", "local-3"]
    failed_ids = [f"task-{i:05d}" for i in (7, 14, 21, 28)]
    for task in failed_ids:
        assert task in html
    # stderr is shown, escaped
    assert "bad record &lt;7&gt; &amp; more" in html and "bad record <7>" not in html
    refs = _Refs()
    refs.feed(html)
    assert refs.refs == []
    assert "@import" not in html and "url(" not in html


def test_report_command(flaky_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmd.html"
    assert main(["report", flaky_run, "-o", str(out), "--vm", "Standard_D2s_v5"]) == 0
    assert "Standard_D2s_v5" in out.read_text()
    assert main(["report", "no-such-run-123"]) == 2


def test_a_local_run_is_priced_as_an_estimate_at_the_price_given(flaky_run: str, tmp_path: Path) -> None:
    """This machine costs nothing: the report estimates one node busy from the first attempt's start
    to the last attempt's end, priced as `status` prices a Batch run's nodes; `status` shows none."""
    html = write_report(flaky_run, tmp_path / "p.html", price=3600.0).read_text()
    attempts = ledger_attempts(flaky_run)
    busy = max(a["ended_at"] for a in attempts) - min(a["started_at"] for a in attempts)
    shown = re.search(r"cost \(estimated\)</div><div class=\"value\">\$([\d,.]+)", html)
    assert shown and float(shown.group(1).replace(",", "")) == pytest.approx(busy, abs=0.01)  # $1 a second
    assert "An estimate: this run ran on this machine" in html
    from shardrun.core.status import run_status

    assert run_status(flaky_run)["cost"] is None


# -- a big synthetic ledger -------------------------------------------------------------------------
def synthetic_run(n_tasks: int, workers: int = 24, seed: int = 7) -> tuple[str, int]:
    """Record a run of `n_tasks` in the ledger as the local backend would: list-scheduled attempts on
    `workers`, about 5% retried and 1% failed for good, with stored stderr for the failures."""
    rng = random.Random(seed)
    ws = Workspace()
    run_id = layout.new_run_id("synthetic")
    t0 = 1_790_000_000.0
    tasks = [(layout.task_id(i, n_tasks), i, f"{run_id}/inputs/x{i}", 100 + i % 50, f"{run_id}/outputs/x{i}")
             for i in range(1, n_tasks + 1)]
    spec = parse_spec({"app": {"command": ["true"]}, "split": {"input": "in.txt"},
                       "merge": {"output": "out.txt"}}, "/jobs/synthetic.toml", Path("/jobs"))
    ws.ledger.create_run(RunRow(run_id, "synthetic", "/jobs/synthetic.toml", "f",
                                json.dumps(spec.model_dump(mode="json")), "local", "local",
                                "running", t0 - 5, None, None, None), tasks)
    free = [(t0, f"local-{w + 1}") for w in range(workers)]
    store = ws.store("local")
    count = 0
    with ws.ledger.transaction():
        for task_id, *_ in tasks:
            tries = 2 if rng.random() < 0.05 else 1
            doomed = rng.random() < 0.01
            for attempt in range(1, tries + (1 if doomed else 0) + 1):
                start, worker = heapq.heappop(free)
                end = start + rng.lognormvariate(0, 0.5)
                last = attempt == tries + (1 if doomed else 0)
                ok = last and not doomed
                ws.ledger.attempt_started(run_id, task_id, attempt, worker, 1000 + count, start)
                ws.ledger.attempt_finished(run_id, task_id, attempt, end, 0 if ok else 2,
                                           "succeeded" if ok else "failed", None if ok else "exit code 2")
                heapq.heappush(free, (end, worker))
                count += 1
            ws.ledger.set_task_state(run_id, [task_id], "failed" if doomed else "succeeded")
            if doomed:
                store.put_bytes(layout.log_key(run_id, task_id, tries + 1, "stderr"),
                                b"".join(b"line %d of the log\n" % i for i in range(100)))
        ws.ledger.set_run_status(run_id, "failed", "some tasks failed")
    ws.ledger.db.execute("UPDATE runs SET finished_at=? WHERE run_id=?",
                         (max(e for e, _ in free) + 3, run_id))
    ws.close()
    return run_id, count


def test_report_of_ten_thousand_tasks_stays_compact(tmp_path: Path) -> None:
    run_id, count = synthetic_run(10_000)
    html = write_report(run_id, tmp_path / "big.html").read_text()
    data = timeline_data(html)
    assert len(data["s"]) == count > 10_000
    assert len(html) < 1_500_000  # compact column arrays, not one element per bar
    assert html.count("<details") == 100  # failed tasks shown are capped; the rest are counted
    assert "line 99 of the log" in html and "line 69 of the log" not in html  # only the tail


# -- in headless Chromium ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not chromium or not driver_path:
        message = "needs Debian's chromium and chromium-driver and selenium (scripts/install-test-deps.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="shardrun-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1300,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(drv: Any, path: Path) -> list[dict[str, Any]]:
    """Load the file; return the console messages it caused."""
    drv.get_log("browser")  # drop what earlier pages logged
    drv.get(path.resolve().as_uri())
    logs: list[dict[str, Any]] = drv.get_log("browser")
    return logs


def screenshot(drv: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = drv.execute_script("return document.body.scrollHeight")
    drv.set_window_size(1300, min(int(height) + 40, 8000))
    path = ARTIFACTS / name
    drv.save_screenshot(str(path))
    drv.set_window_size(1300, 900)
    return path


def check_page(drv: Any, path: Path, attempts: list[dict[str, Any]]) -> None:
    logs = open_page(drv, path)
    assert logs == [], logs  # no errors, no warnings, no CSP violations
    assert drv.execute_script("return performance.getEntriesByType('resource').length") == 0
    bars = drv.find_elements("css selector", "#timeline rect.bar")
    assert len(bars) == len(attempts)
    retries = drv.execute_script("return document.querySelectorAll('#timeline rect.bar.retry').length")
    assert retries == sum(retry_flags(attempts))
    failed = drv.execute_script("return document.querySelectorAll('#timeline rect.bar.r1').length")
    assert failed == sum(1 for a in attempts if a["result"] == "failed")


def test_report_renders_in_chromium(browser: Any, flaky_run: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    path = write_report(flaky_run, tmp_path / "flaky.html")
    attempts = ledger_attempts(flaky_run)
    check_page(browser, path, attempts)
    assert len(browser.find_elements("css selector", "#failed details")) == 4
    # hovering a bar names its task and attempt
    bar = browser.find_elements("css selector", "#timeline rect.bar.retry")[0]
    ActionChains(browser).move_to_element(bar).perform()
    tip = browser.find_element("id", "tip")
    assert re.match(r"task-\d{5}  attempt 2", tip.text)
    # dragging across the first half of the timeline zooms into it
    box = browser.find_element("id", "timeline")
    width = box.size["width"]
    ActionChains(browser).move_to_element_with_offset(box, -width // 2 + 100, 0).click_and_hold() \
        .move_by_offset(width // 3, 0).release().perform()
    domain = browser.execute_script("return window.shardrunReport.domain")
    assert domain[1] < timeline_data(path.read_text())["span"]
    screenshot(browser, "report-flaky.png")


def test_thousand_task_run_opens_as_one_file(browser: Any, tmp_path: Path) -> None:
    """The acceptance check: a real 1,000-task run's report opens on its own, offline."""
    result = run_job(make_job(tmp_path / "k", 1000, '["cp", "{input}", "{output}"]', concurrency=4))
    assert result.counts["succeeded"] == 1000
    path = write_report(result.run_id, tmp_path / "k.html")
    check_page(browser, path, ledger_attempts(result.run_id))
    screenshot(browser, "report-1000.png")


def test_ten_thousand_attempts_in_chromium(browser: Any, tmp_path: Path) -> None:
    run_id, count = synthetic_run(10_000)
    path = write_report(run_id, tmp_path / "big.html")
    check_page(browser, path, ledger_attempts(run_id))
    assert browser.execute_script("return window.shardrunReport.bars") == count
    shot = screenshot(browser, "report-10000.png")
    assert shot.stat().st_size > 10_000


def test_report_without_its_storage_still_renders(flaky_run: str, tmp_path: Path) -> None:
    ws = Workspace()
    ws.ledger.db.execute("UPDATE runs SET storage='gone' WHERE run_id=?", (flaky_run,))
    ws.close()
    html = write_report(flaky_run, tmp_path / "nostore.html").read_text()
    assert html.count("stderr not available: cannot open storage") == 4
    assert len(timeline_data(html)["s"]) == 43


# -- the figures count right ------------------------------------------------------------------------
T0 = 1_790_000_000.0


def cards(run_id: str, now: float = T0 + 200_000) -> dict[str, tuple[str, str]]:
    with Workspace() as ws:
        summary = collect(ws, run_id, now=now)["summary"]
    return {label: (value, note) for label, value, note in summary}


def test_busy_share_is_over_task_slots_never_above_all(tmp_path: Path) -> None:
    """2 nodes x 2 slots, all four busy for 100 s: 100% of 4 task slots, not 200% of 2 'workers'."""
    nodes = ["tvm-a", "tvm-a", "tvm-b", "tvm-b"]
    full = [Attempt(i, 1, node, 10.0, 110.0) for i, node in enumerate(nodes, 1)]
    run_id = record_run(tmp_path / "batch.toml", batch_job(nodes=2, slots=2), full, tasks=4, created_at=T0)
    assert cards(run_id)["total task time"][1] == "100% of 4 task slots busy (2 nodes x 2 task slots)"
    # a pool edited to one slot per node that still ran two at once: counted by what was seen
    run_id = record_run(tmp_path / "batch.toml", batch_job(nodes=2, slots=1), full, tasks=4, created_at=T0)
    assert cards(run_id)["total task time"][1] == "100% of 4 task slots busy (4 at once, the most seen)"
    # half busy on this machine: 3 slots (concurrency 3), 300 s of them, 150 s of tasks
    half = [Attempt(1, 1, "local-1", 0.0, 100.0), Attempt(2, 1, "local-2", 0.0, 50.0),
            Attempt(3, 1, "local-3", 0.0, 0.0)]
    run_id = record_run(tmp_path / "local.toml", local_job(concurrency=3), half, tasks=3, created_at=T0)
    assert cards(run_id)["total task time"] == ("2m30s", "50% of 3 task slots busy (concurrency 3)")


def test_the_report_of_a_real_local_run_counts_its_concurrency(flaky_run: str) -> None:
    _, note = cards(flaky_run, now=2e9)["total task time"]
    share = int(note.split("%")[0])
    assert 0 < share <= 100 and note.endswith("of 3 task slots busy (concurrency 3)")


def test_interrupted_and_lost_attempts_are_not_retries(tmp_path: Path) -> None:
    attempts = [
        Attempt(1, 1, "local-1", 0.0, 5.0, "interrupted"), Attempt(1, 2, "local-1", 100.0, 110.0),
        # the client died: the next one closed the attempt when it started, 95 s later
        Attempt(2, 1, "local-2", 0.0, 100.0, "lost"), Attempt(2, 2, "local-2", 100.0, 110.0),
        Attempt(3, 1, "local-1", 0.0, 1.0, "failed"), Attempt(3, 2, "local-1", 1.0, 2.0, "timeout"),
        Attempt(3, 3, "local-1", 2.0, 3.0),
    ]
    run_id = record_run(tmp_path / "job.toml", local_job(concurrency=2), attempts, tasks=3, created_at=T0)
    assert cards(run_id)["retries"] == ("2", "7 attempts in all; 2 resumed after the client stopped")
    html = write_report(run_id, tmp_path / "r.html").read_text()
    assert timeline_data(html)["y"] == [0, 0, 0, 0, 0, 1, 1]  # attempts by task, then attempt


def test_wall_time_leaves_out_the_idle_gap_before_a_retry(tmp_path: Path) -> None:
    """A run whose tasks ran for 11 s, 5 s after it started; a day later a retry ran one for 10 s."""
    day = 86_400.0
    attempts = [Attempt(1, 1, "local-1", 5.0, 15.0), Attempt(2, 1, "local-2", 6.0, 16.0, "failed"),
                Attempt(2, 2, "local-1", day, day + 10.0)]
    run_id = record_run(tmp_path / "job.toml", local_job(concurrency=2), attempts, tasks=2, created_at=T0)
    value, note = cards(run_id)["wall time"]
    assert value == "26s"  # 5 s to the first attempt, 11 s and then 10 s with tasks running
    assert note == ("5.0s to the first attempt + 21s with tasks running; "
                    "1d00h from start to last attempt, 1d00h of it idle")
    html = write_report(run_id, tmp_path / "r.html").read_text()
    assert "Wall time is the time the run was at work" in html  # defined on the page itself
