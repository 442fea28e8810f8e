"""Emulator scale benchmark: 1,000 / 10,000 / 100,000 simulated tasks through the real SDK.

For each size, a fresh emulator (`python -m shardrun.emulator --simulate-tasks LOW-HIGH`, in a
subprocess so its CPU time is its own) runs one job of N tasks on a pool of `--nodes` x `--slots`
task slots. The client does what shardrun's Batch backend does:

    submit   create_task_collection in chunks of 100, `--threads` requests in flight
    monitor  every `--poll` seconds: get_job_task_counts, and when `completed` moved, list the
             completed tasks with $filter "state eq 'completed' and stateTransitionTime ge <mark>"
             ($select id, stateTransitionTime, executionInfo), paging through odata.nextLink

Each task names an input blob (never fetched in simulated mode) and asks for its output file and
its stdout/stderr (`--logs`), which the emulator writes straight into Azurite. The run counts only
when every task succeeded, the monitor saw each one, and Azurite holds exactly one output per task.

Printed per size: wall time (submission and the whole run), the emulator's CPU time (user + system,
from /proc; Azurite's beside it, as it stores every output), and the client's HTTP requests; then per
task, and the ratio of each per-task figure to the previous size's (1.0 = linear: the per-task cost
does not grow with the job). The requests grow with the run's length (a poll a second), not with
the job's size.

`--operations` measures instead, in-process and without HTTP, what each size costs the emulator
per operation in a job whose tasks are half completed: a task count, a scheduler tick, a poll for
the 100 tasks completed since a time, and paging through every completed task. All but the last
should stay flat; the last should grow with the number of completed tasks, not faster.

    .venv/bin/python bench/emulator_scale.py                      # 1,000, 10,000 and 100,000 tasks
    .venv/bin/python bench/emulator_scale.py --sizes 1000 10000   # quicker
    .venv/bin/python bench/emulator_scale.py --operations         # per-operation costs, seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from batch_emulator import RequestCounter, batch_client, emulator_process, ubuntu_vm  # noqa: E402
from tests.fixtures.azurite import Azurite  # noqa: E402

CHUNK = 100
TICKS = os.sysconf("SC_CLK_TCK")
OVERLAP = timedelta(seconds=5)  # how far back each completed-task listing looks, as shardrun does
SELECT = ["id", "stateTransitionTime", "executionInfo"]


@dataclass
class Result:
    tasks: int
    submit_s: float
    wall_s: float
    cpu_s: float
    azurite_cpu_s: float
    requests: int


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime of all its threads


def tasks_for(
    n: int, storage: str, inputs_sas: str, outputs_url: str, logs: bool
) -> list[bm.BatchTaskCreateOptions]:
    def output(pattern: str, path: str, condition: str) -> bm.OutputFile:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(container_url=outputs_url, path=path)),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
        )

    out = []
    for i in range(n):
        task_id = f"task-{i:06d}"
        files = [output("output.txt", f"outputs/{task_id}/output.txt", "tasksuccess")]
        if logs:
            files += [output(f"../{s}.txt", f"logs/{task_id}/{s}.txt", "taskcompletion")
                      for s in ("stdout", "stderr")]
        out.append(bm.BatchTaskCreateOptions(
            id=task_id,
            command_line=f"/bin/sh -c 'app -i input.txt -o output.txt' {task_id}",
            resource_files=[bm.ResourceFile(http_url=f"{storage}/inputs/{task_id}.txt?{inputs_sas}",
                                            file_path="input.txt")],
            output_files=files,
            environment_settings=[bm.EnvironmentSetting(name="SHARDRUN_TASK_ID", value=task_id)],
            constraints=bm.BatchTaskConstraints(max_task_retry_count=3),
        ))
    return out


def submit(client: BatchClient, job_id: str, tasks: list[bm.BatchTaskCreateOptions], threads: int) -> None:
    def send(chunk: list[bm.BatchTaskCreateOptions]) -> None:
        result = client.create_task_collection(job_id, bm.BatchTaskGroup(task_values=chunk))
        bad = [r for r in result.result_values if r.status != "success"]
        if bad:
            raise SystemExit(f"FAIL: {len(bad)} tasks not added, e.g. {bad[0].as_dict()}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, [tasks[i : i + CHUNK] for i in range(0, len(tasks), CHUNK)]))


def monitor(client: BatchClient, job_id: str, n: int, poll: float, deadline: float) -> set[str]:
    """Poll as shardrun does until every task is seen completed; returns the succeeded IDs."""
    seen: dict[str, str] = {}
    mark: datetime | None = None
    last = -1
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: only {len(seen)} of {n} tasks completed in time")
        counts = client.get_job_task_counts(job_id).task_counts
        if counts.completed != last:
            last = counts.completed
            query = "state eq 'completed'"
            if mark is not None:
                since = (mark - OVERLAP).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                query += f" and stateTransitionTime ge DateTime'{since}'"
            for task in client.list_tasks(job_id, filter=query, select=SELECT):
                if mark is None or task.state_transition_time > mark:
                    mark = task.state_transition_time
                seen[task.id] = task.execution_info.result
        if len(seen) < n:
            time.sleep(poll)
    return {k for k, v in seen.items() if v == "success"}


def run_size(args: argparse.Namespace, n: int, azurite: Azurite) -> Result:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    name = f"scale-{n}-{uuid.uuid4().hex[:6]}"
    service.create_container(name)
    key = service.credential.account_key
    expiry = datetime.now(UTC) + timedelta(hours=6)
    read = generate_container_sas(service.account_name, name, account_key=key,
                                  permission=ContainerSasPermissions(read=True), expiry=expiry)
    writable = ContainerSasPermissions(write=True, create=True, add=True)
    write = generate_container_sas(service.account_name, name, account_key=key, permission=writable,
                                   expiry=expiry)
    storage = f"{azurite.account_url}/{name}"
    tasks = tasks_for(n, storage, read, f"{storage}?{write}", args.logs)
    with emulator_process("--node-start-seconds", "0", "--simulate-tasks", args.simulate) as emu:
        pid, counter = emu.pid, RequestCounter()
        client = batch_client(emu.url, counter)
        client.create_pool(bm.BatchPoolCreateOptions(
            id="scale", vm_size="standard_d2s_v3", target_dedicated_nodes=args.nodes,
            task_slots_per_node=args.slots, virtual_machine_configuration=ubuntu_vm()))
        client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="scale")))
        assert azurite.proc is not None
        storage_cpu0 = cpu_seconds(azurite.proc.pid)
        cpu0, requests0, start = cpu_seconds(pid), counter.count, time.monotonic()
        watcher = ThreadPoolExecutor(1)
        seen = watcher.submit(monitor, client, "job", n, args.poll, start + args.timeout)
        submit(client, "job", tasks, args.threads)
        submitted = time.monotonic() - start
        succeeded = seen.result()
        wall, cpu, requests = time.monotonic() - start, cpu_seconds(pid) - cpu0, counter.count - requests0
        storage_cpu = cpu_seconds(azurite.proc.pid) - storage_cpu0
        watcher.shutdown()
    if len(succeeded) != n:
        raise SystemExit(f"FAIL: {n - len(succeeded)} of {n} tasks did not succeed")
    outputs = sum(1 for _ in service.get_container_client(name).list_blobs(name_starts_with="outputs/"))
    if outputs != n:
        raise SystemExit(f"FAIL: Azurite holds {outputs} outputs for {n} tasks")
    service.delete_container(name)
    return Result(n, submitted, wall, cpu, storage_cpu, requests)


def operation_costs(n: int) -> str:
    """Per-operation costs (ms) with n tasks, half completed, straight through Emulator.handle."""
    from shardrun.emulator import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(allow_bearer=True))

    def call(method: str, path: str, body: Any = None, query: str = "") -> Any:
        headers = {"Authorization": "Bearer x", "Content-Type": "application/json; odata=minimalmetadata"}
        data = json.dumps(body).encode() if body is not None else b""
        status, _, payload = emu.handle(method, f"{path}?api-version=2025-06-01{query}", headers, data, "http://x")
        if status >= 300:
            raise SystemExit(f"FAIL: {method} {path} -> {status} {payload[:200]!r}")
        return json.loads(payload) if payload else None

    def timed(action: Callable[[], Any], repeats: int) -> float:
        began = time.perf_counter()
        for _ in range(repeats):
            action()
        return 1000 * (time.perf_counter() - began) / repeats

    vm = {"imageReference": {"publisher": "a", "offer": "b", "sku": "c"}, "nodeAgentSKUId": "n"}
    call("POST", "/pools", {"id": "p", "vmSize": "x", "virtualMachineConfiguration": vm})
    call("POST", "/jobs", {"id": "job", "poolInfo": {"poolId": "p"}})
    for start in range(0, n, CHUNK):
        tasks = [{"id": f"t{i:06d}", "commandLine": "x"} for i in range(start, min(n, start + CHUNK))]
        call("POST", "/jobs/job/addtaskcollection", {"value": tasks})
    for i in range(200, n, 2):
        call("POST", f"/jobs/job/tasks/t{i:06d}/terminate")
    mark = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for i in range(0, 200, 2):  # the last 100 to complete
        call("POST", f"/jobs/job/tasks/t{i:06d}/terminate")
    since = urllib.parse.quote(f"state eq 'completed' and stateTransitionTime ge DateTime'{mark}'")
    completed = urllib.parse.quote("state eq 'completed'")

    def poll() -> None:
        if len(call("GET", "/jobs/job/tasks", query=f"&$filter={since}&$select=id")["value"]) != 100:
            raise SystemExit("FAIL: the poll did not find the 100 tasks completed last")

    def page_all() -> None:
        body, seen = call("GET", "/jobs/job/tasks", query=f"&$filter={completed}&$select=id"), 0
        while True:
            seen += len(body["value"])
            if "odata.nextLink" not in body:
                break
            body = call("GET", "/jobs/job/tasks", query="&" + body["odata.nextLink"].split("&", 1)[1])
        if seen != n // 2:
            raise SystemExit(f"FAIL: paging found {seen} completed tasks, not {n // 2}")

    def tick() -> None:
        with emu.state.lock:
            emu.scheduler.tick(0.05)

    counts = timed(lambda: call("GET", "/jobs/job/taskcounts"), 20)
    return (f"{n:>7} tasks: task count {counts:6.2f} ms, scheduler tick {timed(tick, 20):6.2f} ms, "
            f"poll for the last 100 completed {timed(poll, 5):6.2f} ms, "
            f"paging through {n // 2} completed {timed(page_all, 1):8.1f} ms")


def per_task_ratio(a: float, a_tasks: int, b: float, b_tasks: int) -> float:
    return (b / b_tasks) / (a / a_tasks) if a else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--simulate", default="0.05-0.15", help="--simulate-tasks of the emulator")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--slots", type=int, default=50, help="task slots per node")
    parser.add_argument("--threads", type=int, default=4, help="task collections in flight")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between monitoring rounds")
    parser.add_argument("--logs", action=argparse.BooleanOptionalAction, default=True,
                        help="also upload each task's stdout.txt and stderr.txt")
    parser.add_argument("--timeout", type=float, default=7200.0)
    parser.add_argument("--operations", action="store_true", help="per-operation costs only (in-process)")
    args = parser.parse_args(argv)
    if args.operations:
        for n in args.sizes:
            print(operation_costs(n), flush=True)
        return 0
    print(f"simulated tasks {args.simulate}s on {args.nodes} nodes x {args.slots} slots; chunks of {CHUNK}, "
          f"{args.threads} threads; outputs{' + stdout/stderr' if args.logs else ''} into Azurite")
    results = []
    with tempfile.TemporaryDirectory(prefix="emulator-scale-") as scratch:
        azurite = Azurite(Path(scratch) / "azurite")
        azurite.start()
        try:
            for n in args.sizes:
                r = run_size(args, n, azurite)
                results.append(r)
                print(f"{n:>7} tasks: submit {r.submit_s:6.1f} s, run {r.wall_s:7.1f} s, emulator CPU "
                      f"{r.cpu_s:6.1f} s (Azurite {r.azurite_cpu_s:6.1f} s), {r.requests:5d} requests | "
                      f"per task: {1000 * r.wall_s / n:5.2f} ms wall, {1000 * r.cpu_s / n:5.2f} ms CPU, "
                      f"{r.requests / n:.3f} requests", flush=True)
        finally:
            azurite.stop()
    for small, big in itertools.pairwise(results):
        wall = per_task_ratio(small.wall_s, small.tasks, big.wall_s, big.tasks)
        cpu = per_task_ratio(small.cpu_s, small.tasks, big.cpu_s, big.tasks)
        requests = per_task_ratio(small.requests, small.tasks, big.requests, big.tasks)
        print(f"{small.tasks:>7} -> {big.tasks:>7}: per-task wall x{wall:.2f}, CPU x{cpu:.2f}, "
              f"requests x{requests:.2f} (1.00 = linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
