"""The planner: the model by hand, its choices against brute force, measurement through the real app."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shardrun.cli import main
from shardrun.core.errors import ShardrunError, UsageError
from shardrun.core.spec import load_spec
from shardrun.planning.measure import count_units, measure_workload
from shardrun.planning.plan import (
    Plan,
    Pool,
    estimate,
    job_plan,
    pareto,
    plan_grid,
    recommend,
    same_time,
    table_rows,
)
from shardrun.planning.workload import Sample, Workload
from shardrun.providers.azure.prices import PRICES_AS_OF, VmPrice, choose_vm, load_prices

if TYPE_CHECKING:
    from .fixtures.azurite import Azurite

VM = VmPrice("Test_VM", 2, 1.0, 0.1)


def pool(**kw: object) -> Pool:
    args: dict[str, object] = {"vm": VM, "startup": 60.0, "task_overhead": 1.5, "slots": 2,
                               "max_nodes": 10, "autoscale_interval": 0.0}
    args.update(kw)
    return Pool(**args)  # type: ignore[arg-type]


WORK = Workload(units=100, unit_seconds=1.0, app_start_seconds=0.5, job_per_task=10)


# -- the model, computed by hand -----------------------------------------------------------------
def test_estimate_equal_tasks_by_hand() -> None:
    p = estimate(WORK, pool(), units_per_task=10, nodes=2)
    # 10 tasks of 1.5 + 0.5 + 10 = 12 s on 4 slots: 3 waves, 36 s, after 60 s of start-up.
    assert (p.tasks, p.task_seconds) == (10, 12.0)
    assert p.makespan == pytest.approx(96.0)
    assert p.node_hours == pytest.approx(2 * 96 / 3600)
    assert p.cost == p.dedicated_cost == pytest.approx(2 * 96 / 3600 * 1.0)
    assert p.spot_cost == pytest.approx(2 * 96 / 3600 * 0.1)
    assert p.utilization == pytest.approx(120 / 144)


def test_short_last_task_alone_in_last_wave() -> None:
    work = Workload(units=101, unit_seconds=1.0, app_start_seconds=0.5)
    # 11 tasks on 5 slots: waves of 5, 5, 1; the lone last task holds 1 unit: 2 + 1 = 3 s.
    p = estimate(work, pool(slots=1), units_per_task=10, nodes=5)
    assert p.tasks == 11
    assert p.makespan == pytest.approx(60 + 12 + 12 + 3)
    # With 4 slots the last wave (tasks 9-11) still holds full tasks.
    q = estimate(work, pool(slots=2), units_per_task=10, nodes=2)
    assert q.makespan == pytest.approx(60 + 3 * 12)


def test_autoscale_adds_a_lag_before_and_a_tail_after() -> None:
    fixed = estimate(WORK, pool(), 10, 2)
    scaled = estimate(WORK, pool(autoscale_interval=300.0), 10, 2)
    assert scaled.makespan == pytest.approx(fixed.makespan + 300)
    assert scaled.node_hours == pytest.approx(fixed.node_hours + 2 * 300 / 3600)


def test_the_guides_trade_off() -> None:
    """1,000 units: 1,000 tasks of 1 finish sooner than 100 tasks of 10, and cost more in start-ups."""
    work = Workload(units=1000, unit_seconds=30.0)
    p = pool(slots=1, max_nodes=1000, startup=300.0, task_overhead=5.0)
    fine = estimate(work, p, units_per_task=1, nodes=1000)
    coarse = estimate(work, p, units_per_task=10, nodes=100)
    assert fine.makespan < coarse.makespan
    assert fine.cost > coarse.cost


# -- choosing plans, checked against brute force --------------------------------------------------
def _dominated(p: Plan, plans: list[Plan]) -> bool:
    return any(q.makespan < p.makespan and q.cost < p.cost and not same_time(q.makespan, p.makespan)
               for q in plans)


def test_grid_is_sensible() -> None:
    plans = plan_grid(WORK, pool(max_nodes=50))
    assert all(p.nodes <= math.ceil(p.tasks / p.slots) for p in plans)
    assert any(p.units_per_task == WORK.job_per_task for p in plans)
    assert {p.tasks for p in plans} >= {1, 100}
    assert len({(p.tasks, p.nodes) for p in plans}) == len(plans)
    # each node count is the fewest that gives its number of waves: one node less takes longer
    small = pool(max_nodes=50)
    for p in plans:
        if p.nodes > 1:
            assert estimate(WORK, small, p.units_per_task, p.nodes - 1).makespan > p.makespan


def test_pareto_front() -> None:
    plans = plan_grid(WORK, pool(max_nodes=50))
    front = pareto(plans)
    assert [p.makespan for p in front] == sorted(p.makespan for p in front)
    assert all(a.cost > b.cost for a, b in itertools.pairwise(front))
    assert not [p for p in front if _dominated(p, plans)]


@pytest.mark.parametrize("deadline", [100.0, 200.0, 2000.0])
def test_deadline_gives_the_cheapest_plan_in_time(deadline: float) -> None:
    plans = plan_grid(WORK, pool(max_nodes=50))
    rec = recommend(plans, deadline=deadline)
    in_time = [p for p in plans if p.makespan <= deadline]
    assert rec.met and rec.plan is not None
    assert rec.plan.makespan <= deadline
    assert rec.plan.cost == min(p.cost for p in in_time)


def test_a_pools_spot_share_prices_its_plans() -> None:
    """A pool of 3 dedicated and 1 Spot node costs 3/4 of the dedicated price plus 1/4 of Spot's."""
    mixed = estimate(WORK, pool(spot_share=0.25), units_per_task=10, nodes=2)
    assert mixed.node_hours == pytest.approx(2 * 96 / 3600)
    assert mixed.cost == pytest.approx(mixed.node_hours * (0.75 * 1.0 + 0.25 * 0.1))
    assert (mixed.dedicated_cost, mixed.spot_cost) == (pytest.approx(mixed.node_hours * 1.0),
                                                       pytest.approx(mixed.node_hours * 0.1))
    assert pool(spot_share=0.25).pricing == "25% Spot" and pool(spot_share=1.0).pricing == "Spot"


@pytest.mark.parametrize("spot_share", [0.0, 1.0])
def test_budget_gives_the_fastest_plan_within_it(spot_share: float) -> None:
    plans = plan_grid(WORK, pool(max_nodes=50, spot_share=spot_share))
    budget = sorted(p.cost for p in plans)[len(plans) // 2]
    rec = recommend(plans, budget=budget)
    assert rec.plan is not None and rec.plan.cost <= budget
    quickest = min(p.makespan for p in plans if p.cost <= budget)
    assert same_time(rec.plan.makespan, quickest)


def test_impossible_constraints_say_why() -> None:
    plans = plan_grid(WORK, pool())
    rec = recommend(plans, deadline=1.0)
    assert not rec.met and rec.plan is None
    assert "fastest plan takes" in rec.why
    rec = recommend(plans, budget=1e-9)
    assert not rec.met and "cheapest plan costs" in rec.why


# -- prices ---------------------------------------------------------------------------------------
def test_price_table_override(tmp_path: Path) -> None:
    f = tmp_path / "prices.toml"
    f.write_text('as_of = "2026-11"\n[Standard_D4s_v5]\nvcpus = 4\ndedicated = 0.5\nspot = 0.05\n'
                 "[My_Size]\nvcpus = 8\ndedicated = 2.0\n")
    table = load_prices(f)
    assert table["standard_d4s_v5"].dedicated == 0.5
    assert table["my_size"] == VmPrice("My_Size", 8, 2.0, 2.0)
    assert choose_vm("my_size", prices_file=f, spot_price=0.3).spot == 0.3
    assert choose_vm("Standard_D2s_v5", price=0.2).dedicated == 0.2
    assert choose_vm("Unknown_Size", price=0.7, vcpus=3) == VmPrice("Unknown_Size", 3, 0.7, 0.7)
    with pytest.raises(UsageError, match="Standard_D4s_v5"):
        choose_vm("Unknown_Size")
    f.write_text("[Bad]\nvcpus = 2\n")
    with pytest.raises(UsageError, match="needs vcpus and dedicated"):
        load_prices(f)
    assert PRICES_AS_OF


# -- measurement through the job's own splitter and app -------------------------------------------
def test_fit_separates_start_from_per_unit() -> None:
    from shardrun.planning.measure import fit

    exact = [Sample("a", u, 0.25 + 0.02 * u) for u in (1, 10, 10, 10)]
    per_unit, start = fit(exact)
    assert per_unit == pytest.approx(0.02) and start == pytest.approx(0.25)
    assert fit([Sample("a", 5, 1.0), Sample("b", 5, 2.0)]) == (pytest.approx(0.3), 0.0)
    assert fit([Sample("a", 1, 1.0), Sample("b", 9, 0.5)]) == (0.0, pytest.approx(0.75))


def test_count_units(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"x\ny\nz\n")
    (tmp_path / "a.csv").write_bytes(b'h1,h2\n1,"two\nlines"\n3,4\n')
    (tmp_path / "a.json").write_text("[1, 2, 3, 4]")
    folder = tmp_path / "piece"
    folder.mkdir()
    for name in ("p", "q"):
        (folder / name).write_text(name)
    assert count_units("lines", tmp_path / "a.txt") == 3
    assert count_units("csv", tmp_path / "a.csv") == 2
    assert count_units("json", tmp_path / "a.json") == 4
    assert count_units("files", folder) == 2
    assert count_units("command", tmp_path / "a.txt") == 1


SLEEPY_APP = """
import sys, time
lines = open(sys.argv[1]).read().splitlines()
time.sleep(PER_LINE * len(lines))
open(sys.argv[2], "w").write("".join(l.upper() + "\\n" for l in lines))
"""


def make_job(folder: Path, split: str = 'method = "lines"\nper_task = 5', lines: int = 40,
             per_line: float = 0.01) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(SLEEPY_APP.replace("PER_LINE", repr(per_line)))
    (folder / "in.txt").write_text("".join(f"line {i}\n" for i in range(lines)))
    job = folder / "job.toml"
    job.write_text(
        f'[job]\nname = "sleepy"\n'
        f'[app]\ncommand = ["{sys.executable}", "app.py", "{{input}}", "{{output}}"]\n'
        f'[split]\ninput = "in.txt"\n{split}\n'
        f'[merge]\noutput = "out.txt"\n'
    )
    return job


def test_measure_runs_the_app_on_samples(tmp_path: Path) -> None:
    # 0.1 s a line: the fit's slope stands well above a loaded machine's noise in a start-up
    spec = load_spec(make_job(tmp_path / "job", per_line=0.1))
    work = measure_workload(spec, samples=3)
    assert (work.units, work.job_per_task, work.unit_name) == (40, 5, "lines")
    # three pieces of the job's size, spread over the input, and one single line for the fit
    assert [s.units for s in work.samples] == [5, 5, 5, 1]
    assert all(s.seconds >= 0.1 * s.units for s in work.samples)  # the app sleeps that long
    assert work.unit_seconds > 0
    assert not list((tmp_path / "job").glob("piece-*"))  # nothing left beside the job


def test_measure_counts_units_of_a_custom_splitter(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    splitter = folder / "splitter.py"
    folder.mkdir()
    splitter.write_text(textwrap.dedent("""\
        import sys, pathlib
        src, out, per = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
        lines = open(src).read().splitlines(keepends=True)
        for i in range(0, len(lines), per):
            (out / f"part{i // per:04d}.txt").write_text("".join(lines[i:i + per]))
        """))
    split = (f'command = ["{sys.executable}", "splitter.py", "{{input}}", "{{outdir}}", "{{per_task}}"]\n'
             "per_task = 4")
    spec = load_spec(make_job(folder, split, lines=18))
    work = measure_workload(spec, samples=2)
    assert (work.units, work.job_per_task) == (18, 4)
    assert [s.units for s in work.samples] == [4, 2, 1]  # first, last (18 = 4 x 4 + 2), one unit


def test_failing_app_is_reported(tmp_path: Path) -> None:
    job = make_job(tmp_path / "bad")
    (tmp_path / "bad" / "app.py").write_text("import sys\nprint('no such table', file=sys.stderr)\nsys.exit(4)\n")
    with pytest.raises(ShardrunError, match="no such table"):
        measure_workload(load_spec(job), samples=1)


# -- the command ----------------------------------------------------------------------------------
def test_plan_command_prints_table_plot_and_recommendation(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    job = make_job(tmp_path / "job")
    plot = tmp_path / "plan.svg"
    code = main(["plan", str(job), "--deadline", "8m", "--plot", str(plot), "--max-nodes", "20"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "recommended:" in text and "makespan" in text and PRICES_AS_OF in text
    svg = ET.parse(plot).getroot()
    assert svg.tag.endswith("svg")
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polyline")) >= 2


def test_plan_json_and_unmet_deadline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = make_job(tmp_path / "job")
    code = main(["plan", str(job), "--unit-time", "2s", "--no-plot", "--json", "--budget", "1"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["workload"]["units"] == 40 and data["workload"]["how"] == "given"
    assert data["recommended"]["cost"] <= 1
    code = main(["plan", str(job), "--unit-time", "2s", "--no-plot", "--deadline", "30s"])
    assert code == 1
    assert "no recommendation" in capsys.readouterr().out


def test_the_job_files_own_shard_size_is_a_row_even_off_the_front(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """per_task = 1 (40 tasks) is as fast as 20 tasks of 2 and dearer: not on the Pareto front, but
    the table still shows it, marked, as the legend promises."""
    job = make_job(tmp_path / "job", 'method = "lines"\nper_task = 1')
    work = Workload(units=40, unit_seconds=2.0, job_per_task=1)
    big = Pool(vm=choose_vm("Standard_D4s_v5"), max_nodes=20, slots=4)
    own = job_plan(work, big)
    assert own is not None and own not in pareto(plan_grid(work, big))
    assert own in table_rows(plan_grid(work, big), None, own=own)
    assert main(["plan", str(job), "--unit-time", "2s", "--no-plot", "--max-nodes", "20"]) == 0
    text = capsys.readouterr().out
    marked = [line for line in text.splitlines() if re.search(r"│\s+40 \*\s+│\s+1\s+│\s+10\s+│", line)]
    assert len(marked) == 1, text
    assert "* = the shard size in the job file" in text


def test_formats() -> None:
    from shardrun.planning.plan import fmt_duration, fmt_money

    assert [fmt_duration(s) for s in (0.0032, 0.15, 5, 59.6, 61, 3600, 90000)] == \
        ["3.2ms", "150ms", "5.0s", "1m00s", "1m01s", "1h00m", "1d01h"]
    assert [fmt_money(u) for u in (0, 4.8e-5, 0.012, 1234.5)] == ["$0.000", "$0.000048", "$0.012", "$1,234.50"]


def test_plan_takes_the_pool_from_the_jobs_batch_section(tmp_path: Path) -> None:
    """A job file for Azure Batch is planned on the pool it asks for, unless options override it."""
    from click.testing import CliRunner

    from shardrun.cli.commands import cli

    job = Path(__file__).resolve().parent.parent / "examples" / "wordcount" / "job-batch.toml"
    runner = CliRunner()
    out = runner.invoke(cli, ["plan", str(job), "--unit-time", "1ms", "--no-plot"]).output
    assert "VM: Standard_D2s_v5" in out and "2 task slots per node, up to 2 nodes" in out
    assert "plans priced dedicated, $0.096 per node-hour" in out  # its pool has no Spot nodes
    out = runner.invoke(cli, ["plan", str(job), "--unit-time", "1ms", "--no-plot", "--spot"]).output
    assert "plans priced Spot, $0.011 per node-hour" in out
    out = runner.invoke(cli, ["plan", str(job), "--unit-time", "1ms", "--no-plot", "--vm",
                              "Standard_D8s_v5", "--max-nodes", "5"]).output
    assert "VM: Standard_D8s_v5" in out and "up to 5 nodes" in out


# -- calibration from the ledger of a rehearsal on the emulator (its accuracy: bench/plan_accuracy.py) --
# Copies its input and sleeps a quarter of a second per line: a shell and `sleep`, nothing else to start.
SLEEP_PER_LINE = ["sh", "-c", 'n=0; while IFS= read -r line; do printf "%s\\n" "$line"; n=$((n + 1)); '
                  'done < "$INPUT_PATH" > "$OUTPUT_PATH"; sleep "$((n / 4)).$((n % 4 * 25))"']


@pytest.mark.slow
def test_a_rehearsal_on_the_emulator_calibrates_the_plan(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rehearsal on the emulator (12 tasks of 4 lines on 2 nodes x 2 slots), `shardrun run` in a
    process of its own as a user runs it, calibrates start-up and per-task overhead from the ledger
    for the plan of the same job at 24 tasks. How close that plan comes to the run is a wall-clock
    comparison: bench/plan_accuracy.py measures it (the planner's 20%), not the suite."""
    import os
    import subprocess

    from shardrun.core.workspace import Workspace

    from .fixtures.azurite import DEV_KEY
    from .fixtures.emulator import start_emulator
    from .helpers import write_job

    emu = start_emulator(check_responses=False)  # timing, not the spec, is checked here
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(48)))

        def job(per_task: int, name: str = "job.toml") -> Path:
            return write_job(tmp_path, {
                "app": {"command": SLEEP_PER_LINE},
                "split": {"input": "big.txt", "method": "lines", "per_task": per_task},
                "merge": {"method": "concat", "output": "result.txt"},
                "run": {"backend": "azure-batch", "storage": "blob", "timeout": "1m"},
                "storage": {"account_url": azurite.account_url, "auth": "key"},
                "batch": {"account_url": emu.url, "account_name": emu.config.account_name,
                          "auth": "shared_key", "dedicated_nodes": 2, "task_slots_per_node": 2,
                          "poll_interval": 0.3},
            }, name=name)

        def run(path: Path) -> str:
            done = subprocess.run([sys.executable, "-m", "shardrun", "run", "-q", "--new", str(path)],
                                  env=os.environ.copy(), capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            with Workspace() as ws:
                return ws.ledger.runs()[0].run_id

        def plan(path: Path) -> dict[str, Any]:
            assert main(["plan", str(path), "--json", "--no-plot", "--unit-time", "0.25s"]) == 0
            answer: dict[str, Any] = json.loads(capsys.readouterr().out)
            return answer

        before = plan(job(4))["calibration"]
        assert before["runs"] == [] and before["how"].startswith("defaults")
        rehearsal = run(job(4))
        planned = plan(job(2))
        calibration = planned["calibration"]
        assert calibration["runs"] == [rehearsal]
        assert "calibrated from 1 earlier run of this job" in calibration["how"]
        assert calibration["task_overhead"] < 2.0 and calibration["startup"] < 300  # not the defaults
        predicted = planned["job_plan"]
        assert (predicted["tasks"], predicted["nodes"]) == (24, 2) and predicted["makespan"] > 0
    finally:
        emu.stop()
