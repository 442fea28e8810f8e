"""The shipped examples run as documented, and running them in pieces gives the same answer as
running the app once over the whole input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import shardrun

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def copy_example(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder, ignore=shutil.ignore_patterns("out", "__pycache__"))
    return folder


def test_wordcount_matches_one_pass_over_the_book(tmp_path: Path) -> None:
    folder = copy_example("wordcount", tmp_path)
    result = shardrun.run_job(folder / "job.toml")
    assert result.ok, result.message
    assert result.counts["succeeded"] == 35

    merged = folder / "out" / "word-counts.jsonl"
    records = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [r["task"] for r in records] == [f"task-{n:05d}" for n in range(1, 36)]

    whole = tmp_path / "whole.jsonl"
    subprocess.run(
        [sys.executable, "count_words.py", "-i", "devils-dictionary.txt", "-o", whole, "-c", "config.json"],
        cwd=folder, check=True,
    )
    one_pass = json.loads(whole.read_text())
    assert sum(r["lines"] for r in records) == one_pass["lines"] == 8537
    assert sum(r["words"] for r in records) == one_pass["words"]
    summed: Counter[str] = Counter()
    for r in records:
        summed.update(r["counts"])
    assert summed == Counter(one_pass["counts"])

    shown = subprocess.run(
        [sys.executable, "top_words.py", merged, "-n", "3"], cwd=folder, check=True,
        capture_output=True, text=True,
    ).stdout
    assert f"35 tasks, 8537 lines, {one_pass['words']} words" in shown


def test_classic_matches_pricing_all_orders_at_once(tmp_path: Path) -> None:
    folder = copy_example("classic", tmp_path)
    result = shardrun.run_job(folder / "job.toml")
    assert result.ok, result.message
    assert result.counts["succeeded"] == 24  # 600 orders, 25 per task

    # The classic way, by hand and in one piece: the app over all orders, then the recombiner.
    whole = tmp_path / "whole"
    whole.mkdir()
    subprocess.run(
        [sys.executable, "price_orders.py", "-i", "orders.json", "-o", whole / "output1.json",
         "-c", "config.json"],
        cwd=folder, check=True, capture_output=True,
    )
    by_hand = subprocess.run(
        [sys.executable, "recombiner.py", whole], cwd=folder, check=True, capture_output=True,
        text=True,
    ).stdout
    merged = (folder / "out" / "priced-orders.csv").read_text()
    assert merged == by_hand

    rows = list(csv.DictReader(merged.splitlines()))
    assert len(rows) == 600
    assert [r["order_id"] for r in rows] == [o["order_id"] for o in
                                             json.loads((folder / "orders.json").read_text())]
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert len(rejected) == 3 and all("SKU-9999" in r["reason"] for r in rejected)


def test_classic_wrapper_reads_the_task_contract(tmp_path: Path) -> None:
    folder = copy_example("classic", tmp_path)
    job = folder / "job.toml"
    text = job.read_text()
    job.write_text(text.replace(
        'command = ["python3", "price_orders.py", "-i", "{input}", "-o", "{output}", "-c", "{config}"]',
        'command = ["bash", "app_wrapper.sh"]', 1))
    assert 'command = ["bash", "app_wrapper.sh"]' in job.read_text()
    result = shardrun.run_job(job)
    assert result.ok, result.message
    rows = list(csv.DictReader((folder / "out" / "priced-orders.csv").read_text().splitlines()))
    assert len(rows) == 600


def test_wordcount_on_batch_gives_the_same_result_as_locally(
    tmp_path: Path, azurite: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """job-batch.toml (what scripts/rehearse.sh runs), pointed at this test's emulator and Azurite."""
    from shardrun.emulator import Emulator, EmulatorConfig

    from .fixtures.azurite import DEV_KEY

    folder = copy_example("wordcount", tmp_path)
    with Emulator(EmulatorConfig(port=0, node_start_seconds=0.2)) as emu:
        job = folder / "job-batch.toml"
        text = job.read_text()
        text = text.replace("http://127.0.0.1:10000/devstoreaccount1", azurite.account_url)
        text = text.replace("http://127.0.0.1:10010", emu.url).replace('poll_interval = "1s"',
                                                                      'poll_interval = "0.3s"')
        job.write_text(text)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        result = shardrun.run_job(job)
    assert result.ok, result.message
    assert shardrun.run_job(folder / "job.toml").ok
    on_batch = (folder / "out" / "word-counts-batch.jsonl").read_text()
    assert on_batch == (folder / "out" / "word-counts.jsonl").read_text()
    assert len(on_batch.splitlines()) == 35


def test_pandoc_example_gives_what_pandoc_gives_on_each_file(tmp_path: Path) -> None:
    """A real program no one here wrote, printing to stdout, with outputs that keep their names."""
    if shutil.which("pandoc") is None:
        pytest.fail("pandoc is not installed: bash scripts/install-test-deps.sh installs it")
    folder = copy_example("pandoc", tmp_path)
    result = shardrun.run_job(folder / "job.toml")
    assert result.ok, result.message
    merged = folder / "out" / "html"
    assert result.merged_output == merged
    sources = sorted((folder / "docs").glob("*.md"))
    assert len(sources) == result.counts["succeeded"] == 4
    assert sorted(p.name for p in merged.glob("*.html")) == sorted(f"{p.stem}.html" for p in sources)
    for source in sources:
        direct = subprocess.run(["pandoc", "-f", "markdown", "-t", "html", str(source)],
                                capture_output=True, check=True).stdout
        assert (merged / f"{source.stem}.html").read_bytes() == direct, source.name
        assert direct.strip()
