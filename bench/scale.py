"""Scaling table (issue 13): what the shardrun client costs at 1,000 / 10,000 / 100,000 tasks.

Each row is one `shardrun run` of a `lines` job (one line per task; the app upper-cases its piece,
`tr a-z A-Z`; concat merge), in a fresh SHARDRUN_HOME, with the client as its own process:

    local      [run] backend = "local": the tasks are processes the client starts
    emulator   [run] backend = "azure-batch" on the project's Batch emulator and Azurite (each in its
               own process), real tasks (processes started by the emulator)
    simulated  the same with `--simulate-tasks` (tasks complete after a simulated duration and the
               emulator writes their output into Azurite; nothing is run)

Columns, all measured in the client process itself (a thin wrapper, `--as-client`, runs the CLI's
main() and writes its figures at exit; it adds no work per task):

    wall          the whole `shardrun run`, split to merged result, as a user waits for it
    client CPU    user + system CPU of the client process alone (getrusage RUSAGE_SELF), per task.
                  Not counted: the tasks (on the local backend they are the client's children:
                  their CPU is the `tasks CPU` column, RUSAGE_CHILDREN), the emulator, Azurite
    peak MiB      the client's maximum resident set size (ru_maxrss)
    req/poll      Batch requests per monitoring round (AzureBatchBackend.poll's own count): the
                  median and the maximum over the run's polls
    up / down MB  bytes the client sent to and received from Blob Storage (Azurite's port), counted
                  on the client's sockets, HTTP headers included; Batch traffic beside it

A row counts only when the run exits 0 and its merged result is right: the exact upper-cased input
(local, emulator) or one line per task (simulated: each task's output names its task).

Features other work adds are job-file knobs: `--pieces by-reference` sets `[batch] pieces`, and
`--merge-where cluster` sets `[merge] where`. The bench checks the job file with the installed
shardrun first and stops with one line if it does not know the key.

    .venv/bin/python bench/scale.py                           # 1k, 10k, 100k: local, emulator, simulated
    .venv/bin/python bench/scale.py --quick                   # 200 and 1,000 tasks
    .venv/bin/python bench/scale.py --modes simulated --sizes 100000
    .venv/bin/python bench/scale.py --pieces by-reference --merge-where cluster
    .venv/bin/python bench/scale.py --listing 5000           # the monitor's listing alone, SDK vs JSON
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APP = ["sh", "-c", 'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"']
MODES = ("local", "emulator", "simulated")
DEFAULT_SIZES = {"local": [1000, 10000, 100000], "emulator": [1000, 10000], "simulated": [100000]}
QUICK_SIZES = [200, 1000]


# -- inside the client process ----------------------------------------------------------------------
def as_client(stats_path: str, argv: list[str]) -> int:
    """Run shardrun's CLI in this process, counting socket bytes per peer port and Batch requests per
    poll; write them with this process's rusage at exit."""
    counts: dict[int, list[int]] = {}  # peer port -> [sent, received]
    peers: weakref.WeakKeyDictionary[socket.socket, list[int]] = weakref.WeakKeyDictionary()
    polls: list[int] = []
    plain = socket.socket

    original_connect, original_sendall, original_send = plain.connect, plain.sendall, plain.send
    original_recv_into, original_recv = plain.recv_into, plain.recv

    def connect(self: socket.socket, address: Any) -> None:
        original_connect(self, address)
        if isinstance(address, tuple) and len(address) >= 2:
            peers[self] = counts.setdefault(int(address[1]), [0, 0])

    def sendall(self: socket.socket, data: Any, *args: Any) -> None:
        original_sendall(self, data, *args)
        if (c := peers.get(self)) is not None:
            c[0] += memoryview(data).nbytes

    def send(self: socket.socket, data: Any, *args: Any) -> int:
        n = original_send(self, data, *args)
        if (c := peers.get(self)) is not None:
            c[0] += n
        return n

    def recv_into(self: socket.socket, buffer: Any, *args: Any) -> int:
        n = original_recv_into(self, buffer, *args)
        if (c := peers.get(self)) is not None:
            c[1] += n
        return n

    def recv(self: socket.socket, size: int, *args: Any) -> bytes:
        data = original_recv(self, size, *args)
        if (c := peers.get(self)) is not None:
            c[1] += len(data)
        return data

    plain.connect, plain.sendall, plain.send = connect, sendall, send  # type: ignore[method-assign]
    plain.recv_into, plain.recv = recv_into, recv  # type: ignore[method-assign]

    try:
        from shardrun.providers.azure.batch import AzureBatchBackend
    except ImportError:  # no azure extra: local rows only
        pass
    else:
        original_poll = AzureBatchBackend.poll

        def poll(self: AzureBatchBackend) -> int:
            n = original_poll(self)
            if n:  # 0: the run was already done, no request made
                polls.append(n)
            return n

        AzureBatchBackend.poll = poll  # type: ignore[method-assign]

    def write() -> None:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        Path(stats_path).write_text(json.dumps({
            "cpu": me.ru_utime + me.ru_stime, "user": me.ru_utime, "sys": me.ru_stime,
            "maxrss_kb": me.ru_maxrss, "children_cpu": kids.ru_utime + kids.ru_stime,
            "bytes": {str(k): v for k, v in counts.items()}, "polls": polls,
        }))

    atexit.register(write)
    from shardrun.cli import main

    trace_path = os.environ.get("SHARDRUN_SCALE_TRACEMALLOC")
    if trace_path:
        watch_memory(trace_path)
    profile_path = os.environ.get("SHARDRUN_SCALE_PROFILE")
    if not profile_path:
        return main(argv)
    import cProfile

    profiler = cProfile.Profile()
    atexit.register(lambda: profiler.dump_stats(profile_path))  # runs before write(): LIFO
    return profiler.runcall(main, argv)


def watch_memory(path: str, every: float = 5.0) -> None:
    """tracemalloc in this process: every `every` seconds, when more is allocated than ever before,
    a snapshot; at exit the largest one's top allocation sites (by line) go to `path`."""
    import threading
    import tracemalloc

    tracemalloc.start(1)
    best: dict[str, Any] = {"size": 0, "snapshot": None, "at": ""}

    def look() -> None:
        size, _ = tracemalloc.get_traced_memory()
        if size > best["size"]:
            best.update(size=size, snapshot=tracemalloc.take_snapshot(), at=time.strftime("%H:%M:%S"))

    def loop() -> None:
        while True:
            time.sleep(every)
            look()

    def write() -> None:
        look()
        snapshot = best["snapshot"]
        if snapshot is None:
            return
        lines = [f"largest traced: {best['size'] / 1e6:.1f} MB at {best['at']}"]
        for stat in snapshot.statistics("lineno")[:30]:
            lines.append(f"{stat.size / 1e6:8.1f} MB {stat.count:9d} blocks  {stat.traceback}")
        Path(path).write_text("\n".join(lines) + "\n")

    threading.Thread(target=loop, daemon=True).start()
    atexit.register(write)


# -- the bench --------------------------------------------------------------------------------------
class BenchError(Exception):
    """A run failed or gave a wrong result: its figures would mean nothing."""


@dataclass
class Row:
    mode: str
    tasks: int
    wall: float
    cpu: float
    user: float
    sys: float
    tasks_cpu: float
    peak_mb: float
    polls: list[int]
    blob_up: int
    blob_down: int
    batch_up: int
    batch_down: int


def write_job(folder: Path, mode: str, tasks: int, args: argparse.Namespace,
              batch_url: str = "", storage_url: str = "") -> Path:
    import tomli_w  # here, not at the top: the client process (--as-client) never loads it

    with (folder / "input.txt").open("w") as f:
        f.writelines(f"line {i}\n" for i in range(tasks))
    merge: dict[str, Any] = {"method": "concat", "output": "result.txt"}
    if args.merge_where:
        merge["where"] = args.merge_where
    sections: dict[str, dict[str, Any]] = {
        "app": {"command": APP},
        "split": {"input": "input.txt", "method": "lines", "per_task": 1},
        "merge": merge,
    }
    if mode == "local":
        sections["run"] = {"concurrency": args.concurrency}
    else:
        nodes, slots = (args.sim_nodes, args.sim_slots) if mode == "simulated" else (args.nodes, args.slots)
        batch: dict[str, Any] = {"account_url": batch_url, "account_name": "devbatchaccount1",
                                 "auth": "shared_key", "dedicated_nodes": nodes,
                                 "task_slots_per_node": slots, "poll_interval": args.poll}
        if args.pieces:
            batch["pieces"] = args.pieces
        sections["run"] = {"backend": "azure-batch", "storage": "blob", "retries": 2}
        sections["storage"] = {"account_url": storage_url, "auth": "key"}
        sections["batch"] = batch
    job = folder / "job.toml"
    job.write_text(tomli_w.dumps(sections), encoding="utf-8")
    return job


def check_keys(job: Path) -> None:
    """The installed shardrun must know every key this bench sets (e.g. [batch] pieces)."""
    from shardrun.core.errors import ShardrunError
    from shardrun.core.spec import load_spec

    try:
        load_spec(job)
    except ShardrunError as err:
        raise SystemExit(f"bench/scale.py: the installed shardrun refuses this bench's job file: {err}"
                         ) from None


def check_result(folder: Path, mode: str, tasks: int, merge_where: str | None = None) -> None:
    result = folder / "result.txt"
    if not result.is_file():
        raise BenchError(f"{mode} {tasks}: no merged result")
    if mode == "simulated":
        lines = result.read_bytes().count(b"\n")
        if merge_where == "cluster":  # the merge task is simulated too: its output is one line
            if lines != 1:
                raise BenchError(f"{mode} {tasks}: the simulated merge task's result has {lines} "
                                 "lines, not 1")
            return
        if lines != tasks:
            raise BenchError(f"{mode} {tasks}: the merged result has {lines} lines, not {tasks}")
        return
    expected = "".join(f"LINE {i}\n" for i in range(tasks))
    if result.read_text() != expected:
        raise BenchError(f"{mode} {tasks}: the merged result is not the upper-cased input")


def run_row(mode: str, tasks: int, args: argparse.Namespace, scratch: Path, storage_url: str,
            storage_port: int) -> Row:
    folder = scratch / f"{mode}-{tasks}"
    folder.mkdir()
    path = os.pathsep.join([str(args.src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "SHARDRUN_HOME": str(folder / "home"), "PYTHONPATH": path}
    with contextlib.ExitStack() as stack:
        batch_url, batch_port = "", 0
        if mode != "local":
            from batch_emulator import EmulatorDidNotStart, emulator_process
            from tests.fixtures.azurite import DEV_KEY

            from shardrun.emulator import DEV_ACCOUNT_KEY

            simulate = ["--simulate-tasks", args.simulate] if mode == "simulated" else []
            try:
                emu = stack.enter_context(emulator_process("--node-start-seconds", "0", *simulate))
            except EmulatorDidNotStart as err:
                raise BenchError(str(err)) from None
            batch_url, batch_port = emu.url, emu.port
            env |= {"AZURE_BATCH_KEY": DEV_ACCOUNT_KEY, "AZURE_STORAGE_KEY": DEV_KEY}
        job = write_job(folder, mode, tasks, args, batch_url, storage_url)
        stats = folder / "client.json"
        if args.tracemalloc:
            args.tracemalloc.mkdir(parents=True, exist_ok=True)
            env["SHARDRUN_SCALE_TRACEMALLOC"] = str(args.tracemalloc.resolve() / f"{mode}-{tasks}.txt")
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            env["SHARDRUN_SCALE_PROFILE"] = str(args.profile.resolve() / f"{mode}-{tasks}.prof")
        argv = [sys.executable, str(Path(__file__).resolve()), "--as-client", str(stats), "--",
                "run", str(job)]
        started = time.perf_counter()
        with (folder / "client.out").open("w") as out:
            proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                  stdin=subprocess.DEVNULL, timeout=args.timeout, check=False)
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (folder / "client.out").read_text(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"{mode} {tasks}: shardrun run exited {proc.returncode}: {' | '.join(tail)}")
    check_result(folder, mode, tasks, args.merge_where)
    s = json.loads(stats.read_text())
    blob = s["bytes"].get(str(storage_port), [0, 0])
    batch = s["bytes"].get(str(batch_port), [0, 0]) if batch_port else [0, 0]
    return Row(mode, tasks, wall, s["cpu"], s["user"], s["sys"], s["children_cpu"],
               s["maxrss_kb"] / 1024, s["polls"], blob[0], blob[1], batch[0], batch[1])


def row_text(r: Row) -> str:
    polls = f"{statistics.median(r.polls):.0f} / {max(r.polls)} ({len(r.polls)} polls)" if r.polls else "-"
    return (f"| {r.mode} | {r.tasks:,} | {r.wall:.1f} s | {1000 * r.cpu / r.tasks:.2f} ms "
            f"({r.user:.1f} + {r.sys:.1f} s) | {1000 * r.tasks_cpu / r.tasks:.2f} ms | {r.peak_mb:.0f} | "
            f"{polls} | {r.blob_up / 1e6:.2f} / {r.blob_down / 1e6:.2f} | "
            f"{r.batch_up / 1e6:.2f} / {r.batch_down / 1e6:.2f} |")


HEADER = ("| mode | tasks | wall | client CPU per task (user + sys) | tasks CPU per task | peak MiB | "
          "req/poll median / max | blob MB up / down | batch MB up / down |\n"
          "|---|---|---|---|---|---|---|---|---|")


def listing_costs(n: int, repeats: int = 5) -> str:
    """The monitor's listing of n completed tasks, side by side in one process: the SDK's
    list_tasks (a BatchTask model per task, as before) and batch_monitor.list_task_pages (JSON),
    client CPU per listed task (thread time of this process; the emulator runs in its own)."""
    from azure.batch import models as bm
    from batch_emulator import batch_client, emulator_process, ubuntu_vm

    from shardrun.providers.azure.batch_listing import COMPLETED_SELECT, list_task_pages, task_record

    with emulator_process("--node-start-seconds", "0") as emu:
        client = batch_client(emu.url)
        client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="x",
                                                     virtual_machine_configuration=ubuntu_vm()))
        client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))
        for start in range(0, n, 100):
            client.create_task_collection("j", bm.BatchTaskGroup(task_values=[
                bm.BatchTaskCreateOptions(id=f"t{i:06d}", command_line="x", display_name=f"t{i} attempt 1")
                for i in range(start, min(n, start + 100))]))
        for i in range(n):
            client.terminate_task("j", f"t{i:06d}")
        query = "state eq 'completed'"

        def sdk() -> int:  # what the monitor did: every field of every listed task read
            seen = 0
            for t in client.list_tasks("j", filter=query, select=COMPLETED_SELECT):
                info = t.execution_info
                seen += bool(t.id and t.display_name and t.state_transition_time and info.result)
            return seen

        def raw() -> int:
            return sum(bool(task_record(t).execution_info.result)
                       for page in list_task_pages(client, "j", COMPLETED_SELECT, query) for t in page)

        times: dict[str, list[float]] = {"sdk": [], "json": []}
        for r in range(repeats):
            for name, fn in (("sdk", sdk), ("json", raw))[:: 1 if r % 2 == 0 else -1]:
                began = time.thread_time()
                if fn() != n:
                    raise BenchError(f"{name} listing did not see {n} completed tasks")
                times[name].append(time.thread_time() - began)
    a, b = statistics.median(times["sdk"]), statistics.median(times["json"])
    return (f"listing {n:,} completed tasks, client CPU (median of {repeats}): SDK models "
            f"{1000 * a / n:.3f} ms/task, JSON {1000 * b / n:.3f} ms/task, ratio {a / b:.1f}x")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--as-client"]:
        return as_client(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--sizes", type=int, nargs="+", help="task counts for every mode "
                        "(default: local 1k/10k/100k, emulator 1k/10k, simulated 100k)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} for every mode")
    parser.add_argument("--concurrency", type=int, default=2, help="local: [run] concurrency")
    parser.add_argument("--nodes", type=int, default=4, help="emulator: dedicated nodes")
    parser.add_argument("--slots", type=int, default=8, help="emulator: task slots per node")
    parser.add_argument("--sim-nodes", type=int, default=20, help="simulated: dedicated nodes")
    parser.add_argument("--sim-slots", type=int, default=50, help="simulated: task slots per node")
    parser.add_argument("--simulate", default="0.05-0.15", help="simulated: --simulate-tasks of the emulator")
    parser.add_argument("--poll", type=float, default=1.0, help="[batch] poll_interval, seconds")
    parser.add_argument("--pieces", help="[batch] pieces (e.g. by-reference)")
    parser.add_argument("--merge-where", help="[merge] where (e.g. cluster)")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="per run, seconds")
    parser.add_argument("--profile", type=Path, help="cProfile the client into DIR/MODE-TASKS.prof "
                        "(slows it: for finding costs, not for the table)")
    parser.add_argument("--tracemalloc", type=Path, help="the client's largest allocation sites "
                        "into DIR/MODE-TASKS.txt (slows it: for finding memory, not for the table)")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the shardrun source to run")
    parser.add_argument("--listing", type=int, metavar="N",
                        help="only: the monitor's listing of N completed tasks, SDK models vs JSON")
    args = parser.parse_args(argv)
    args.src = args.src.resolve()
    sys.path[:0] = [str(args.src), str(ROOT)]
    if args.listing:
        print(listing_costs(args.listing), flush=True)
        return 0
    plan = [(m, n) for m in args.modes
            for n in (QUICK_SIZES if args.quick else args.sizes or DEFAULT_SIZES[m])]
    print(f"local: concurrency {args.concurrency}; emulator: {args.nodes} nodes x {args.slots} slots; "
          f"simulated: {args.sim_nodes} x {args.sim_slots}, tasks of {args.simulate} s; poll every "
          f"{args.poll} s; pieces {args.pieces or 'default'}; merge where {args.merge_where or 'default'}",
          flush=True)
    print(HEADER, flush=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="shardrun-scale-") as tmp, contextlib.ExitStack() as stack:
        scratch = Path(tmp)
        for mode in {m for m, _ in plan}:  # before anything starts: a knob the code does not know
            (scratch / "check").mkdir(exist_ok=True)
            check_keys(write_job(scratch / "check", mode, 1, args, "http://127.0.0.1:1", "http://127.0.0.1:1/a"))
        storage_url, storage_port = "", 0
        if any(m != "local" for m, _ in plan):
            from tests.fixtures.azurite import Azurite

            azurite = Azurite(scratch / "azurite")
            azurite.start()
            stack.callback(azurite.stop)
            storage_url, storage_port = azurite.account_url, azurite.port
        for mode, n in plan:
            try:
                print(row_text(run_row(mode, n, args, scratch, storage_url, storage_port)), flush=True)
            except (BenchError, subprocess.TimeoutExpired) as err:
                failed += 1
                print(f"| {mode} | {n:,} | FAILED: {err} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
