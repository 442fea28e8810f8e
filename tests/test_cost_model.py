"""One cost model: `status`, `report` and `plan` price node-hours the same way (hourly_price)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.core import layout
from shardrun.core.ledger import RunRow
from shardrun.core.run import spec_of
from shardrun.core.spec import parse_spec
from shardrun.core.status import run_status
from shardrun.core.workspace import Workspace
from shardrun.planning.plan import Pool, estimate, fmt_money, node_hours_cost
from shardrun.planning.report import collect, write_report
from shardrun.planning.workload import Workload
from shardrun.providers.azure.prices import choose_vm, spot_share
from shardrun.providers.azure.settings import batch_settings

T0 = 1_790_000_000.0
# (task, attempt, worker, start, end) on two nodes, one with two slots; task-00003 ran twice.
ATTEMPTS = [
    ("task-00001", 1, "tvm-a/0", 0.0, 600.0),
    ("task-00002", 1, "tvm-a/1", 100.0, 1500.0),
    ("task-00003", 1, "tvm-b/0", 200.0, 2000.0),
    ("task-00003", 2, "tvm-b/0", 2000.0, 2900.0),
    ("task-00004", 1, "tvm-b/0", 2900.0, 2950.0),
]
BUSY_SECONDS = 1500.0 + 2750.0  # node a: 0 to 1500; node b: 200 to 2950
# D2s_v5 at 1 dedicated and 3 Spot nodes: a quarter of $0.096 and three quarters of $0.0115 per hour
HOURLY = 0.25 * 0.096 + 0.75 * 0.0115


def record_batch_run() -> str:
    """A finished Azure Batch run, written into the ledger as the Batch backend records one."""
    spec = parse_spec({
        "app": {"command": ["true"]}, "split": {"input": "in.txt"}, "merge": {"output": "out.txt"},
        "run": {"backend": "azure-batch", "storage": "blob"},
        "batch": {"account_url": "http://127.0.0.1:9", "vm_size": "Standard_D2s_v5",
                  "dedicated_nodes": 1, "spot_nodes": 3},
    }, "/jobs/priced.toml", Path("/jobs"))
    run_id = layout.new_run_id("priced")
    tasks = [(layout.task_id(i, 4), i, f"{run_id}/inputs/x{i}", 10, f"{run_id}/outputs/x{i}")
             for i in range(1, 5)]
    with Workspace() as ws:
        ws.ledger.create_run(RunRow(run_id, "priced", "/jobs/priced.toml", "f",
                                    json.dumps(spec.model_dump(mode="json")), "azure-batch", "blob",
                                    "running", T0 - 60, None, None, None), tasks)
        with ws.ledger.transaction():
            for task_id, attempt, worker, start, end in ATTEMPTS:
                ws.ledger.attempt_started(run_id, task_id, attempt, worker, None, T0 + start)
                ok = not (task_id == "task-00003" and attempt == 1)
                ws.ledger.attempt_finished(run_id, task_id, attempt, T0 + end, 0 if ok else 1,
                                           "succeeded" if ok else "failed", None if ok else "exit code 1")
            ws.ledger.set_task_state(run_id, [t[0] for t in tasks], "succeeded")
            ws.ledger.set_run_status(run_id, "merging")
            ws.ledger.set_run_status(run_id, "succeeded")
    return run_id


def test_status_report_and_plan_give_one_batch_run_the_same_cost(tmp_path: Path) -> None:
    run_id = record_batch_run()
    status = run_status(run_id)["cost"]
    with Workspace() as ws:
        shown = collect(ws, run_id, now=T0 + 10_000)["cost"]
        row = ws.ledger.get_run(run_id)
    assert row is not None
    report = shown.cost
    # by hand: each node's busy window, at the pool's mix of dedicated and Spot prices
    assert report.nodes == status["nodes"] == 2
    assert report.node_hours == pytest.approx(BUSY_SECONDS / 3600)
    assert report.usd == pytest.approx(BUSY_SECONDS / 3600 * HOURLY)
    # status --json shows the same figure on the same basis (rounded to 4 places there)
    assert status["usd"] == pytest.approx(report.usd, abs=1e-4)
    assert status["node_hours"] == pytest.approx(report.node_hours, abs=1e-4)
    assert status["usd_per_node_hour"] == report.usd_per_node_hour == round(HOURLY, 4)
    assert status["basis"] == report.basis and "busy time" in report.basis and "75% Spot" in report.basis
    assert not shown.estimated
    # the planner prices the same node-hours on the same pool to the same dollars
    batch = batch_settings(spec_of(row))
    assert batch is not None
    vm = choose_vm(batch.vm_size)
    assert node_hours_cost(report.node_hours, vm, spot_share(batch)) == pytest.approx(report.usd)
    plan = estimate(Workload(units=1, unit_seconds=1.0), Pool(vm=vm, spot_share=spot_share(batch)), 1, 1)
    assert plan.cost == pytest.approx(plan.node_hours * HOURLY)
    # and the page says so, without calling it an estimate
    html = write_report(run_id, tmp_path / "r.html").read_text()
    card = re.search(r'<div class="label">cost</div><div class="value">([^<]+)</div>', html)
    assert card and card.group(1) == fmt_money(report.usd) == "$0.039"
    assert f"same figure as shardrun status {run_id} --json" in html


def test_report_of_a_batch_run_takes_a_price_but_not_a_vm(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run_id = record_batch_run()
    assert main(["report", run_id, "-o", str(tmp_path / "r.html"), "--vm", "Standard_F8s_v2"]) == 2
    assert "--vm prices only runs on this machine" in capsys.readouterr().err
    with Workspace() as ws:
        repriced = collect(ws, run_id, price=1.0)["cost"].cost
    assert repriced.usd == pytest.approx(BUSY_SECONDS / 3600 * 1.0)
    assert repriced.basis.endswith("the price given")


def test_status_of_a_batch_run_says_its_cost_is_a_lower_bound(capsys: pytest.CaptureFixture[str]) -> None:
    run_id = record_batch_run()
    assert main(["status", run_id]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "cost so far" in line)
    assert f"about ${BUSY_SECONDS / 3600 * HOURLY:.2f} or more" in line
    assert "busy node-hours on 2 x Standard_D2s_v5" in line and "idle time not counted" in line
