"""Fault harness for the azure-batch backend (issue 14): many short runs of a 100-task job on the
Batch emulator and Azurite, each under one fault the service really has, then a table of how they
ended. Not a test and not a speed benchmark: it shows that every run ends with the right result or a
clear, documented error, and leaves nothing behind.

    .venv/bin/python bench/faults_batch.py [--trials 10] [--tasks 100] [--only ROW] [--src DIR]

`--src` runs the `shardrun` of another source tree (e.g. an older commit's `src`, from
`git archive`), to compare before and after.

Rows: 429/503 without Retry-After on 20% of requests; 10% of requests applied and their answer lost;
5% of connections reset; Spot nodes preempted at 0.3 per busy node-second; the dedicated core quota
reached on the pool's first resize. Each trial has its own emulator (seeded with the trial number)
and ledger; Azurite is shared.

A trial is right when `shardrun run` exits 0 with the exact merged result, or, for the quota row,
exits 3 with the documented one-line error and no result. Leftovers: the Batch pools and jobs still
in the emulator once the run is over, and the run's blob containers still in Azurite after
`shardrun cleanup RUN` (a run keeps its container for `logs`, `report` and `retry` until then).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tomli_w  # noqa: E402
from azure.batch import BatchClient  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402
from tests.fixtures.azurite import DEV_KEY, Azurite  # noqa: E402

from shardrun.core.ledger import Ledger  # noqa: E402
from shardrun.emulator import Emulator, EmulatorConfig  # noqa: E402
from shardrun.emulator.faults import FaultConfig  # noqa: E402
from shardrun.providers.azure.retry import AZURE_RETRY  # noqa: E402

QUOTA_ERROR = "cannot get any node (AccountCoreQuotaReached"
APP = ["sh", "-c", 'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"']


@dataclass(frozen=True)
class Row:
    name: str
    faults: dict[str, Any]
    batch: dict[str, Any] = field(default_factory=dict)
    expect_exit: int = 0
    expect_error: str = ""
    gc_from_elsewhere: bool = False  # `gc --delete --older-than 0s` from another home mid-run
    kill_azurite_in: str = ""  # "splitting" (the upload), "running" or "merging": kill -9, restart


ROWS = [
    Row("429/503 without Retry-After, 20%",
        {"throttle_rate": 0.1, "busy_rate": 0.1, "retry_after_share": 0.0}),
    Row("applied, answer lost, 10%", {"drop_response_rate": 0.1}),
    Row("connection reset, 5%", {"reset_rate": 0.05}),
    Row("Spot preemption, 0.3/s", {"preempt_rate": 0.3},
        {"dedicated_nodes": 0, "spot_nodes": 3}),
    Row("core quota on first resize", {"resize_error": "AccountCoreQuotaReached"},
        expect_exit=3, expect_error=QUOTA_ERROR),
    Row("gc --delete from another home mid-run", {}, gc_from_elsewhere=True),
    Row("Azurite killed -9 and restarted during upload", {}, kill_azurite_in="splitting"),
    Row("Azurite killed -9 and restarted while tasks run", {}, kill_azurite_in="running"),
    Row("Azurite killed -9 and restarted during merge", {}, kill_azurite_in="merging"),
]


@dataclass
class Trial:
    exit_code: int
    right: bool
    pools: int
    jobs: int
    containers: int
    faults: int
    seconds: float
    note: str


def write_job(folder: Path, emu: Emulator, azurite: Azurite, tasks: int, batch: dict[str, Any]) -> Path:
    (folder / "big.txt").write_text("".join(f"line {i}\n" for i in range(tasks)))
    sections = {
        "app": {"command": APP},
        "split": {"input": "big.txt", "method": "lines", "per_task": 1},
        "merge": {"method": "concat", "output": "result.txt"},
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 2, "timeout": "2m"},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emu.url, "account_name": emu.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 2, "task_slots_per_node": 8,
                  "poll_interval": 0.3, **batch},
    }
    job = folder / "job.toml"
    job.write_text(tomli_w.dumps(sections), encoding="utf-8")
    return job


def left_in(client: BatchClient) -> tuple[int, int]:
    """Pools and jobs once the deletions already asked for have finished."""
    deadline = time.monotonic() + 60
    while True:
        pools, jobs = list(client.list_pools()), list(client.list_jobs())
        going = [x for x in (*pools, *jobs) if str(x.state).lower().endswith("deleting")]
        if not going or time.monotonic() > deadline:
            return len(pools), len(jobs)
        time.sleep(0.2)


def shardrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shardrun", *args], env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def run_states(ledger_path: Path) -> list[str]:
    """The run states in a client's ledger, read-only (the client is writing it)."""
    if not ledger_path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=5) as db:
            return [r[0] for r in db.execute("SELECT status FROM runs")]
    except sqlite3.OperationalError:
        return []


def run_with_azurite_killed(job: Path, env: dict[str, str], azurite: Azurite,
                            phase: str) -> subprocess.CompletedProcess[str]:
    """Kill Azurite -9 (losing what it had not flushed) when the run reaches `phase`, restart it at
    once on the same folder and port, and let the client carry on; if it stops with an error, run
    it again as a user would (at most twice)."""
    client = subprocess.Popen([sys.executable, "-m", "shardrun", "run", "-q", str(job)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledger_path = Path(env["SHARDRUN_HOME"]) / "ledger.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and client.poll() is None:
        if phase in run_states(ledger_path):
            break
        time.sleep(0.02)
    hit = False
    if client.poll() is None:
        azurite.kill()
        # the kill is inside the phase when the ledger still says so right after it
        hit = phase in run_states(ledger_path)
        azurite.start()
    out, err = client.communicate(timeout=900)
    print(f"  Azurite killed {'inside' if hit else 'after'} the {phase} phase", flush=True)
    code = client.returncode
    for _ in range(2):
        if code == 0:
            break
        again = shardrun("run", "-q", str(job), env=env)
        out, err, code = out + again.stdout, err + again.stderr, again.returncode
    return subprocess.CompletedProcess(client.args, code, out, err)


def run_with_gc_elsewhere(job: Path, env: dict[str, str],
                           folder: Path) -> subprocess.CompletedProcess[str]:
    """Run the job; while its tasks run, another home (another machine, as far as the ledger goes)
    runs `gc --delete --older-than 0s` on the same accounts. It must leave the live run alone."""
    client = subprocess.Popen([sys.executable, "-m", "shardrun", "run", "-q", str(job)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledger_path = Path(env["SHARDRUN_HOME"]) / "ledger.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and client.poll() is None:
        if "running" in run_states(ledger_path):
            break
        time.sleep(0.1)
    other = {**env, "SHARDRUN_HOME": str(folder / "another-home")}
    gc = shardrun("gc", "--delete", "--older-than", "0s", "--job", str(job), env=other)
    out, err = client.communicate(timeout=900)
    if gc.returncode != 0:
        err += f"\ngc from another home failed: {gc.stderr.strip()[-200:]}"
    return subprocess.CompletedProcess(client.args, client.returncode, out, err)


def trial(row: Row, seed: int, tasks: int, azurite: Azurite, root: Path, src: Path) -> Trial:
    folder = root / f"{ROWS.index(row)}-{row.name[:12].replace(' ', '-').replace('/', '-')}-{seed}"
    folder.mkdir()
    faults = FaultConfig(seed=seed, **row.faults)
    emu = Emulator(EmulatorConfig(node_start_seconds=0.2, tick_seconds=0.02, faults=faults)).start()
    try:
        env = {**os.environ, "SHARDRUN_HOME": str(folder / "home"), "AZURE_BATCH_KEY": emu.config.account_key,
               "AZURE_STORAGE_KEY": DEV_KEY, "PYTHONPATH": str(src)}
        job = write_job(folder, emu, azurite, tasks, row.batch)
        started = time.monotonic()
        if row.gc_from_elsewhere:
            run = run_with_gc_elsewhere(job, env, folder)
        elif row.kill_azurite_in:
            run = run_with_azurite_killed(job, env, azurite, row.kill_azurite_in)
        else:
            run = shardrun("run", "-q", str(job), env=env)
        seconds = time.monotonic() - started
        result = folder / "result.txt"
        if row.expect_exit == 0:
            right = run.returncode == 0 and result.exists() and result.read_text() == "".join(
                f"LINE {i}\n" for i in range(tasks))
        else:
            lines = [x for x in run.stderr.splitlines() if row.expect_error in x]
            right = run.returncode == row.expect_exit and len(lines) == 1 and not result.exists()
        note = "" if right else (run.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        key = AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key)
        client = BatchClient(emu.url, key, **AZURE_RETRY.client_options())
        pools, jobs = left_in(client)
        containers = 0
        runs = Ledger(folder / "home" / "ledger.sqlite").runs()
        if runs:
            run_id = runs[0].run_id
            cleanup = shardrun("cleanup", run_id, "--force", env=env)
            if cleanup.returncode != 0:
                note = note or f"cleanup: {cleanup.stderr.strip()[-200:]}"
            blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
            containers = sum(1 for c in blobs.list_containers(name_starts_with=run_id) if c.name == run_id)
        injected = (emu.faults.request_faults + emu.faults.drops + emu.faults.resets
                    + emu.faults.preemptions + emu.faults.resize_errors)
        return Trial(run.returncode, right, pools, jobs, containers, injected, seconds, note)
    finally:
        emu.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--only", help="run the rows whose name contains this")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the shardrun source to run")
    args = parser.parse_args()
    rows = [r for r in ROWS if args.only is None or args.only.lower() in r.name.lower()]
    table = []
    with tempfile.TemporaryDirectory(prefix="shardrun-faults-") as tmp:
        root = Path(tmp)
        azurite = Azurite(root / "azurite")
        azurite.start()
        try:
            for row in rows:
                trials = []
                for seed in range(1, args.trials + 1):
                    t = trial(row, seed, args.tasks, azurite, root, args.src.resolve())
                    trials.append(t)
                    print(f"{row.name} #{seed}: exit {t.exit_code}, {'right' if t.right else 'WRONG'}, "
                          f"{t.faults} faults, left {t.pools} pools {t.jobs} jobs {t.containers} "
                          f"containers, {t.seconds:.1f} s {t.note}", flush=True)
                table.append((row, trials))
        finally:
            azurite.stop()
    print()
    print(f"{args.tasks} tasks per run")
    header = ("fault", "trials", "right", "exit codes", "faults (median)", "pools left", "jobs left",
              "containers left", "run s (median)")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    ok = True
    for row, trials in table:
        codes = Counter(t.exit_code for t in trials)
        print(" | ".join([
            row.name, str(len(trials)), str(sum(t.right for t in trials)),
            ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())),
            f"{statistics.median(t.faults for t in trials):.0f}",
            str(sum(t.pools for t in trials)), str(sum(t.jobs for t in trials)),
            str(sum(t.containers for t in trials)),
            f"{statistics.median(t.seconds for t in trials):.1f}",
        ]))
        ok = ok and all(t.right and not (t.pools or t.jobs or t.containers) for t in trials)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
