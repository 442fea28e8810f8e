"""How close the planner's makespans come to runs on the Batch emulator (the planner issue's 20%).

Two parts, each a table of predicted against measured makespans, measured side by side in one run:

    model        the model (planning/plan.py `estimate`) with a per-task overhead calibrated from
                 a run of empty tasks, against emulator runs of 8, 24 and 72 tasks (and 24 on an
                 autoscaled pool): the makespan from the service's own timestamps
    calibrated   `shardrun run` of a rehearsal (12 tasks) on the emulator and Azurite, then
                 `shardrun plan` of the same job at 24 tasks, calibrated from the ledger, against
                 `shardrun run` of that job (its start to its last attempt's end, in the ledger)

These compare wall-clock times, so they live here and not in the suite: a loaded machine makes any
run slower than its plan. Give the load average with the figures.

    PYTHONPATH=src .venv/bin/python bench/plan_accuracy.py [--parts model calibrated]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.batch import BatchClient  # noqa: E402
from azure.batch import models as bm  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

from shardrun.emulator import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, Emulator, EmulatorConfig  # noqa: E402
from shardrun.planning.plan import Pool, estimate  # noqa: E402
from shardrun.planning.workload import Workload  # noqa: E402
from shardrun.providers.azure.prices import VmPrice  # noqa: E402

VM = VmPrice("Test_VM", 2, 1.0, 0.1)
EMU_STARTUP = 2.0  # the emulator's simulated node start-up (creating -> starting -> idle), seconds
EMU_NODES, EMU_SLOTS = 3, 2
EMU_WORK = Workload(units=72, unit_seconds=24.0 / 72, unit_name="thirds of a second")
EMU_AUTOSCALE_INTERVAL = 3.0  # seconds (long enough to matter); the emulator is told to accept it
EMU_CALIBRATION_WAVES = 12
GROW = f"$TargetDedicatedNodes = min({EMU_NODES}, max($PendingTasks.GetSample(1)));"
# The app of the calibrated part: sleeps a quarter of a second per line of its piece.
SLEEP_PER_LINE = ["sh", "-c", 'n=0; while IFS= read -r line; do printf "%s\\n" "$line"; n=$((n + 1)); '
                  'done < "$INPUT_PATH" > "$OUTPUT_PATH"; sleep "$((n / 4)).$((n % 4 * 25))"']


def emulator_makespan(client: BatchClient, pool_id: str, tasks: int, seconds: float, *, nodes: int,
                      slots: int, autoscale: float = 0.0) -> float:
    """A pool, a job of `tasks` tasks that sleep `seconds`: the pool's creation to the last end."""
    image = bm.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts", sku="server",
                                     version="latest")
    pool = bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v5", task_slots_per_node=slots,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=image, node_agent_sku_id="batch.node.ubuntu 24.04"))
    if autoscale:  # evaluated at once (no tasks yet: no nodes), then every interval
        pool.enable_auto_scale = True
        pool.auto_scale_formula = GROW
        pool.auto_scale_evaluation_interval = timedelta(seconds=autoscale)
    else:
        pool.target_dedicated_nodes = nodes
    client.create_pool(pool)
    created = client.get_pool(pool_id).creation_time
    client.create_job(bm.BatchJobCreateOptions(id=pool_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    work = [bm.BatchTaskCreateOptions(id=f"t{i:03d}", command_line=f'/bin/sh -c "sleep {seconds:.4f}"')
            for i in range(tasks)]
    for i in range(0, tasks, 100):
        client.create_task_collection(pool_id, bm.BatchTaskGroup(task_values=work[i:i + 100]))
    give_up = time.monotonic() + 300
    while client.get_job_task_counts(pool_id).task_counts.completed < tasks:
        if time.monotonic() > give_up:
            raise SystemExit(f"{pool_id}: tasks did not finish")
        time.sleep(0.25)  # the makespan comes from the service's timestamps, not from here
    ends = [t.execution_info.end_time for t in client.list_tasks(pool_id)
            if t.execution_info is not None and t.execution_info.result == "success"]
    if len(ends) != tasks or created is None:
        raise SystemExit(f"{pool_id}: not every task succeeded")
    from shardrun.providers.azure.batch_account import delete_pool

    delete_pool(client, pool_id)  # one request: no poller thread outliving the emulator
    return float((max(ends) - created).total_seconds())


def model_part() -> list[tuple[str, float, float]]:
    config = EmulatorConfig(node_start_seconds=EMU_STARTUP, autoscale_min_interval=EMU_AUTOSCALE_INTERVAL / 2,
                            sample_seconds=0.1)
    rows = []
    with Emulator(config) as emu:
        client = BatchClient(emu.url, AzureNamedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY))
        calibration = emulator_makespan(client, "calibrate", EMU_CALIBRATION_WAVES * EMU_NODES * EMU_SLOTS,
                                        0.0, nodes=EMU_NODES, slots=EMU_SLOTS)
        overhead = (calibration - EMU_STARTUP) / EMU_CALIBRATION_WAVES
        print(f"model: per-task overhead {overhead * 1000:.0f} ms (calibrated)", flush=True)
        for tasks, interval in [(8, 0.0), (24, 0.0), (72, 0.0), (24, EMU_AUTOSCALE_INTERVAL)]:
            per_task = EMU_WORK.units // tasks
            measured = emulator_makespan(client, f"shards{tasks}-as{interval:g}", tasks,
                                         per_task * EMU_WORK.unit_seconds, nodes=EMU_NODES,
                                         slots=EMU_SLOTS, autoscale=interval)
            model = Pool(vm=VM, startup=EMU_STARTUP, task_overhead=overhead, slots=EMU_SLOTS,
                         max_nodes=EMU_NODES, autoscale_interval=interval)
            predicted = estimate(EMU_WORK, model, per_task, EMU_NODES).makespan
            rows.append((f"{tasks} tasks" + (f", autoscale {interval:g}s" if interval else ""),
                         predicted, measured))
    return rows


def calibrated_part(scratch: Path) -> list[tuple[str, float, float]]:
    from tests.fixtures.azurite import DEV_KEY, Azurite
    from tests.helpers import write_job

    from shardrun.cli import main
    from shardrun.core.workspace import Workspace

    azurite = Azurite(scratch / "azurite")
    azurite.start()
    emu = Emulator(EmulatorConfig()).start()
    os.environ.update({"SHARDRUN_HOME": str(scratch / "home"), "AZURE_BATCH_KEY": emu.config.account_key,
                       "AZURE_STORAGE_KEY": DEV_KEY})
    try:
        (scratch / "big.txt").write_text("".join(f"line {i}\n" for i in range(48)))

        def job(per_task: int) -> Path:
            return write_job(scratch, {
                "app": {"command": SLEEP_PER_LINE},
                "split": {"input": "big.txt", "method": "lines", "per_task": per_task},
                "merge": {"method": "concat", "output": "result.txt"},
                "run": {"backend": "azure-batch", "storage": "blob", "timeout": "1m"},
                "storage": {"account_url": azurite.account_url, "auth": "key"},
                "batch": {"account_url": emu.url, "account_name": emu.config.account_name,
                          "auth": "shared_key", "dedicated_nodes": 2, "task_slots_per_node": 2,
                          "poll_interval": 0.3},
            })

        def run(path: Path) -> str:
            done = subprocess.run([sys.executable, "-m", "shardrun", "run", "-q", "--new", str(path)],
                                  env=os.environ.copy(), capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise SystemExit(f"shardrun run failed: {done.stderr.strip()[-300:]}")
            with Workspace() as ws:
                return ws.ledger.runs()[0].run_id

        # The in-process emulator's first pool and job take it about half a second longer than
        # later ones: a pool of its own first, so that the rehearsal starts as the next run will.
        warm = BatchClient(emu.url, AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key))
        emulator_makespan(warm, "warm-up", 1, 0.0, nodes=1, slots=1)
        run(job(4))
        out = StringIO()
        with redirect_stdout(out):
            code = main(["plan", str(job(2)), "--json", "--no-plot", "--unit-time", "0.25s"])
        if code != 0:
            raise SystemExit("shardrun plan failed")
        planned: dict[str, Any] = json.loads(out.getvalue())
        calibration = planned["calibration"]
        print(f"calibrated: {calibration['how']}; start-up {calibration['startup']:.2f} s, overhead "
              f"{calibration['task_overhead'] * 1000:.0f} ms", flush=True)
        second = run(job(2))
        with Workspace() as ws:
            row = ws.ledger.get_run(second)
            assert row is not None
            measured = max(a["ended_at"] for a in ws.ledger.attempts(second)) - row.created_at
        return [("24 tasks after a 12-task rehearsal", planned["job_plan"]["makespan"], measured)]
    finally:
        emu.stop()
        azurite.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["model", "calibrated"],
                        default=["model", "calibrated"])
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as scratch:
        if "model" in args.parts:
            rows += [("model", *row) for row in model_part()]
        if "calibrated" in args.parts:
            rows += [("calibrated", *row) for row in calibrated_part(Path(scratch))]
    print("\n| part | run | predicted s | measured s | predicted/measured | within 20% |")
    print("|---|---|---|---|---|---|")
    for part, name, predicted, measured in rows:
        within = abs(predicted - measured) <= 0.20 * measured
        print(f"| {part} | {name} | {predicted:.2f} | {measured:.2f} | {predicted / measured:.2f} | "
              f"{'yes' if within else 'NO'} |")
    return 0 if all(abs(p - m) <= 0.20 * m for _, _, p, m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
