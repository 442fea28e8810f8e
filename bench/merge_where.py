"""[merge] where = "client" against where = "cluster", side by side in one run, on the Batch emulator
(a subprocess, tasks run as real processes) and Azurite (a subprocess).

The same job runs twice: N tasks, each writing an output of `--output-kib` KiB, merged with
`concat`. Printed per mode: wall time of `shardrun run`, the client's own CPU time (this process
only: the emulator and Azurite are other processes), and what the client downloaded from Blob
Storage (files and bytes); then the ratio cluster/client of each. The merged results are compared
byte for byte.

    .venv/bin/python bench/merge_where.py                  # 300 tasks of 4 KiB
    .venv/bin/python bench/merge_where.py --tasks 1000 --output-kib 64
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from batch_emulator import emulator_process  # noqa: E402
from tests.fixtures.azurite import DEV_KEY, Azurite  # noqa: E402
from tests.helpers import write_job  # noqa: E402

from shardrun.cli import main  # noqa: E402
from shardrun.emulator import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME  # noqa: E402
from shardrun.providers.azure.blob import BlobStore  # noqa: E402


@dataclass
class Figures:
    wall_s: float
    cpu_s: float
    files: int
    bytes: int


class Downloads:
    """Counts what the client's BlobStore downloads (get_file is the one way a file comes down)."""

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.real = BlobStore.get_file

    def __enter__(self) -> Downloads:
        counter = self

        def get_file(store: BlobStore, key: str, dest: Path) -> int:
            size = counter.real(store, key, dest)
            counter.files += 1
            counter.bytes += size
            return size

        BlobStore.get_file = get_file  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        BlobStore.get_file = self.real  # type: ignore[method-assign]


def run(folder: Path, where: str, url: str, azurite: Azurite, args: argparse.Namespace) -> Figures:
    folder.mkdir()
    (folder / "in.txt").write_text("".join(f"{i}\n" for i in range(args.tasks)))
    size = args.output_kib * 1024
    job = write_job(folder, {
        "app": {"command": ["sh", "-c", f'head -c {size} /dev/zero | tr "\\0" x > "$OUTPUT_PATH"; '
                            'cat "$INPUT_PATH" >> "$OUTPUT_PATH"']},
        "split": {"input": "in.txt", "method": "lines", "per_task": 1},
        "merge": {"method": "concat", "output": "result.txt", "where": where},
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 0},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": url, "account_name": DEV_ACCOUNT_NAME, "auth": "shared_key",
                  "dedicated_nodes": 2, "task_slots_per_node": 8, "poll_interval": 0.5},
    })
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    with Downloads() as got:
        if main(["run", "-q", str(job)]) != 0:
            raise SystemExit(f"FAIL: the {where} run did not succeed")
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Figures(wall, cpu, got.files, got.bytes)


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--output-kib", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="merge-where-"))
    os.environ.update(AZURE_BATCH_KEY=DEV_ACCOUNT_KEY, AZURE_STORAGE_KEY=DEV_KEY,
                      SHARDRUN_HOME=str(tmp / "home"))
    azurite = Azurite(tmp / "azurite")
    azurite.start()
    try:
        with emulator_process("--node-start-seconds", "0") as emu:
            figures = {where: run(tmp / where, where, emu.url, azurite, args)
                       for where in ("client", "cluster")}
    finally:
        azurite.stop()
    same = (tmp / "client" / "result.txt").read_bytes() == (tmp / "cluster" / "result.txt").read_bytes()
    print(f"{args.tasks} tasks, {args.output_kib} KiB each, concat; results byte-identical: {same}")
    print(f"{'where':<8} {'wall s':>8} {'client CPU s':>13} {'files down':>11} {'bytes down':>12}")
    for where, f in figures.items():
        print(f"{where:<8} {f.wall_s:>8.1f} {f.cpu_s:>13.2f} {f.files:>11} {f.bytes:>12}")
    a, b = figures["client"], figures["cluster"]
    print(f"{'ratio':<8} {b.wall_s / a.wall_s:>8.2f} {b.cpu_s / a.cpu_s:>13.2f} "
          f"{b.files / max(a.files, 1):>11.4f} {b.bytes / max(a.bytes, 1):>12.4f}   (cluster / client)")
    if not same:
        raise SystemExit("FAIL: the merged results differ")


if __name__ == "__main__":
    main_()
