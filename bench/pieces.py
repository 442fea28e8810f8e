"""Pieces benchmark (issue 13, item 1): the client's time to make the pieces of a job available to
its Batch tasks, through bench/latency_proxy.py (20 ms per round trip) in front of Azurite.

One 20 MB `lines` input, 5,000 pieces. Three ways, side by side, each into a fresh container:

    sequential     split into 5,000 files, then one `upload_blob` per piece, one after another
                   (the classic guide's loop)
    by-reference   what `shardrun run` does with [batch] pieces = "by-reference": prepare_run
                   plans the pieces (byte ranges, nothing written), stores the input once (the blob
                   store's parallel block upload) and records every task and its ranges in the
                   ledger
    raw-upload     one SDK `upload_blob` of the whole input (max_concurrency 16): the floor
    per-piece      (for the crossover in docs/azure.md) what [batch] pieces = "per-piece" costs:
                   the same prepare_run, every piece stored as its own blob, 16 at once

Prints the times and the two ratios of the acceptance: by-reference at least 10x faster than the
sequential loop, and within 1.5x of the raw upload.

    PYTHONPATH=src .venv/bin/python bench/pieces.py             # 20 MB, 5,000 pieces
    PYTHONPATH=src .venv/bin/python bench/pieces.py --quick     # 2 MB, 500 pieces: a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency_proxy import start_in_subprocess  # noqa: E402  (bench/ is on sys.path)
from tests.fixtures.azurite import DEV_KEY, Azurite  # noqa: E402
from tests.helpers import write_job  # noqa: E402
from upload import pooled_service  # noqa: E402

from shardrun.core.layout import new_run_id  # noqa: E402
from shardrun.core.prepare import prepare_run  # noqa: E402
from shardrun.core.spec import load_spec  # noqa: E402
from shardrun.core.split import split_lines  # noqa: E402
from shardrun.core.workspace import Workspace  # noqa: E402

THREADS = 16


def make_input(path: Path, size: int) -> int:
    """Lines of 100 bytes; returns how many."""
    line = (b"x" * 99) + b"\n"
    count = size // len(line)
    with path.open("wb") as f:
        for start in range(0, count, 10_000):
            f.write(line * min(10_000, count - start))
    return count


def sequential(url: str, src: Path, per_task: int, scratch: Path) -> None:
    service = pooled_service(url)
    container = f"bench-{uuid.uuid4().hex[:12]}"
    service.create_container(container)
    client = service.get_container_client(container)
    scratch.mkdir()
    for piece in split_lines([src], scratch, per_task):
        with piece.open("rb") as f:
            client.upload_blob(f"inputs/{piece.name}", f, overwrite=True)


def raw_upload(url: str, src: Path) -> None:
    service = pooled_service(url)
    container = f"bench-{uuid.uuid4().hex[:12]}"
    service.create_container(container)
    with src.open("rb") as f:
        service.get_container_client(container).upload_blob(
            "input.txt", f, overwrite=True, max_concurrency=THREADS)


def prepare(url: str, folder: Path, per_task: int, home: Path, mode: str) -> int:
    job = write_job(folder, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "big.txt", "method": "lines", "per_task": per_task},
        "merge": {"method": "concat", "output": "result.txt"},
        "run": {"backend": "azure-batch", "storage": "blob"},
        "storage": {"account_url": url, "auth": "key", "max_concurrency": THREADS},
        "batch": {"account_url": "http://127.0.0.1:9", "auth": "shared_key", "dedicated_nodes": 4,
                  "pieces": mode},
    })
    spec = load_spec(job)
    ws = Workspace(home)
    run = prepare_run(ws, spec, str(job), new_run_id(spec.name))
    tasks = ws.ledger.tasks(run.run_id)
    assert all(bool(t.segments) == (mode == "by-reference") for t in tasks), "not as asked"
    return len(tasks)


def timed(label: str, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    took = time.perf_counter() - start
    print(f"  {label:<13} {took:8.2f} s", flush=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description="shardrun pieces-by-reference benchmark")
    parser.add_argument("--quick", action="store_true", help="2 MB, 500 pieces")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    size, pieces = (2_000_000, 500) if args.quick else (20_000_000, 5000)
    os.environ["AZURE_STORAGE_KEY"] = DEV_KEY
    with tempfile.TemporaryDirectory(prefix="shardrun-bench-") as tmp:
        root = Path(tmp)
        job = root / "job"
        job.mkdir()
        lines = make_input(job / "big.txt", size)
        per_task = lines // pieces
        print(f"{size / 1e6:g} MB of {lines:,} lines, {per_task} lines a piece: {pieces:,} pieces",
              flush=True)
        server = Azurite(root / "azurite")
        server.start()
        proxy, port = start_in_subprocess(server.port, args.delay_ms)
        url = f"http://127.0.0.1:{port}/devstoreaccount1"
        print(f"through the latency proxy (+{args.delay_ms:g} ms per round trip):", flush=True)
        try:
            t_raw = timed("raw-upload", lambda: raw_upload(url, job / "big.txt"))
            made = [0]
            t_ref = timed("by-reference", lambda: made.__setitem__(
                0, prepare(url, job, per_task, root / "home", "by-reference")))
            t_per = timed("per-piece", lambda: prepare(url, job, per_task, root / "home2", "per-piece"))
            t_seq = timed("sequential", lambda: sequential(url, job / "big.txt", per_task,
                                                           root / "pieces"))
        finally:
            proxy.kill()
            proxy.wait()
            server.stop()
    print(f"\nby-reference made {made[0]:,} tasks; per-piece cost {t_per / pieces * 1000:.2f} ms "
          f"a piece ({t_per:.2f} s), by-reference {t_ref / pieces * 1000:.3f} ms a piece")
    fast, near = t_seq / t_ref, t_ref / t_raw
    print(f"by-reference vs sequential: {fast:.1f}x faster  [target >= 10x: "
          f"{'met' if fast >= 10 else 'NOT met'}]")
    print(f"by-reference vs raw upload: {near:.2f}x the time  [target <= 1.5x: "
          f"{'met' if near <= 1.5 else 'NOT met'}]")


if __name__ == "__main__":
    main()
