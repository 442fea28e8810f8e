"""[split] per_task = "auto" (the planner chooses the shard size when a run starts), and the warning for
a job of more than 10,000 tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import shardrun
from shardrun.cli import main
from shardrun.core import pipeline
from shardrun.core.errors import JobFileError, UsageError
from shardrun.core.spec import load_spec
from shardrun.core.split import split_job
from shardrun.core.workspace import Workspace
from shardrun.planning import autosize
from shardrun.planning.autosize import auto_sizes, choose, choose_for_job
from shardrun.planning.calibrate import Calibration
from shardrun.planning.measure import count_input_units, count_tasks
from shardrun.planning.plan import Plan, Pool, estimate
from shardrun.planning.workload import Workload
from shardrun.providers.azure.prices import VmPrice

from .helpers import APPS, PY, lines_job, write_job
from .ledger_records import batch_job, write_toml


class Said:
    """A ProgressView that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def start(self, run_id: str, total: int, counts: dict[str, int]) -> None:
        pass

    def update(self, counts: dict[str, int]) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)

    def transfer(self, label: str, done_bytes: int, total_bytes: int, *, finished: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def auto_job(folder: Path, lines: int = 40, **run: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "big.txt").write_text("".join(f"line {i}\n" for i in range(lines)))
    return write_job(folder, {
        "app": {"command": [PY, str(APPS / "upper.py"), "-i", "{input}", "-o", "{output}"]},
        "split": {"input": "big.txt", "method": "lines", "per_task": "auto"},
        "merge": {"method": "concat", "output": "result.txt"},
        "run": {"concurrency": 2, **run},
    })


def stored_per_task(run_id: str) -> object:
    with Workspace() as ws:
        row = ws.ledger.get_run(run_id)
        assert row is not None
        return json.loads(row.spec_json)["split"]["per_task"]


# -- the job file ---------------------------------------------------------------------------------
def test_per_task_is_a_whole_number_or_auto(tmp_path: Path) -> None:
    job = auto_job(tmp_path)
    assert load_spec(job).split.per_task == "auto"
    for bad in ('"fast"', '"5"', "true", "0", "2.5"):
        job.write_text(job.read_text().replace('per_task = "auto"', f"per_task = {bad}"))
        with pytest.raises(JobFileError, match=r'\[split\] per_task: must be (an integer or "auto"|1 or more)'):
            load_spec(job)
        job.write_text(job.read_text().replace(f"per_task = {bad}", 'per_task = "auto"'))


def test_only_the_planner_resolves_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = auto_job(tmp_path)
    with pytest.raises(UsageError, match='per_task = "auto" needs the planner'):
        pipeline.run_job(job)  # core alone: no ShardSizer given
    with pytest.raises(UsageError, match='per_task = "auto" is chosen when a run starts'):
        split_job(load_spec(job), tmp_path)
    # the command splits as a new run would
    assert main(["split", str(job), "-o", str(tmp_path / "pieces")]) == 0
    out = capsys.readouterr().out
    assert 'per_task = "auto": 20 lines per task' in out and "2 pieces in" in out
    assert len(list((tmp_path / "pieces").iterdir())) == 2


# -- choosing -------------------------------------------------------------------------------------
VM = VmPrice("Test_VM", 2, 1.0, 0.1)
WORK = Workload(units=1000, unit_seconds=1.0, app_start_seconds=0.5, job_per_task=None)


def every_plan(pool: Pool) -> list[Plan]:
    """Each size "auto" tries, on the nodes its tasks get from the pool."""
    return [estimate(WORK, pool, u, pool.nodes_for(math.ceil(WORK.units / u))) for u in auto_sizes(WORK, pool)]


@pytest.mark.parametrize("fixed", [True, False])
def test_auto_takes_the_balanced_plan_on_the_jobs_pool(fixed: bool) -> None:
    pool = Pool(vm=VM, startup=60.0, task_overhead=2.0, slots=2, max_nodes=5, fixed=fixed)
    plan, _ = choose(WORK, pool)
    every = every_plan(pool)
    assert plan is not None
    assert plan.makespan * plan.cost == min(p.makespan * p.cost for p in every)
    assert plan.nodes == (5 if fixed else min(5, math.ceil(plan.tasks / 2)))
    assert 100 in auto_sizes(WORK, pool)  # the size that fills one wave of 5 x 2 slots exactly


def test_auto_meets_a_deadline_or_a_budget() -> None:
    pool = Pool(vm=VM, startup=60.0, task_overhead=2.0, slots=2, max_nodes=5)
    every = every_plan(pool)
    deadline = sorted(p.makespan for p in every)[len(every) // 2]
    plan, _ = choose(WORK, pool, deadline=deadline)
    assert plan is not None and plan.makespan <= deadline
    assert plan.cost == min(p.cost for p in every if p.makespan <= deadline)
    budget = sorted(p.cost for p in every)[len(every) // 2]
    plan, _ = choose(WORK, pool, budget=budget)
    assert plan is not None and plan.cost <= budget
    plan, rec = choose(WORK, pool, deadline=1.0)
    assert plan is None and "fastest plan takes" in rec.why


def test_a_batch_job_is_sized_for_its_own_pool(tmp_path: Path) -> None:
    job = write_toml(tmp_path / "job.toml", batch_job(per_task="auto", nodes=3, slots=2))
    spec = load_spec(job)
    work = Workload(units=40, unit_seconds=30.0, unit_name="lines", job_per_task=None)
    with Workspace() as ws:
        choice = choose_for_job(spec, ws.ledger, work)
        with pytest.raises(UsageError, match=r'per_task = "auto": no plan fits: the fastest plan takes'):
            choose_for_job(spec, ws.ledger, work, deadline=60.0)
    assert choice.plan.nodes == 3 and choice.pool.fixed  # its fixed pool of 3 nodes of 2 slots
    assert choice.plan.tasks == 6  # one wave of 7 lines: the fastest, and on a fixed pool the balanced
    line = choice.line()
    assert line.startswith('per_task = "auto": 7 lines per task (6 tasks on 3 x Standard_D2s_v5')
    assert "the balanced plan" in line and "(defaults: no earlier run on azure-batch" in line


# -- running --------------------------------------------------------------------------------------
def test_auto_is_chosen_said_and_recorded(tmp_path: Path) -> None:
    job = auto_job(tmp_path)
    said = Said()
    result = shardrun.run_job(job, progress=said)
    assert result.ok
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(40))
    chosen = [m for m in said.messages if m.startswith('per_task = "auto": ')]
    assert len(chosen) == 1, said.messages
    # on this machine, 2 at a time: one task for each slot is the fastest
    assert chosen[0].startswith('per_task = "auto": 20 lines per task (2 tasks on this machine, 2 at a time')
    assert "the fastest plan here" in chosen[0] and "measured on" in chosen[0]
    assert stored_per_task(result.run_id) == 20
    assert result.counts["succeeded"] == 2


def test_resume_and_retry_keep_the_size_without_measuring(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    job = auto_job(tmp_path)
    first = shardrun.run_job(job)
    assert first.ok and stored_per_task(first.run_id) == 20

    def no_measuring(*args: object, **kwargs: object) -> Workload:
        raise AssertionError("measured again")

    monkeypatch.setattr(autosize, "measure_workload", no_measuring)
    with Workspace() as ws:  # one task failed, as if its app had
        task = ws.ledger.tasks(first.run_id)[0].task_id
        ws.ledger.set_task_state(first.run_id, [task], "failed")
        ws.ledger.set_run_status(first.run_id, pipeline.RunState.RUNNING)
        ws.ledger.set_run_status(first.run_id, pipeline.RunState.FAILED)
    retried = shardrun.retry_run(first.run_id)
    assert retried.ok and retried.run_id == first.run_id
    with Workspace() as ws:  # the client stopped with one task to go
        ws.ledger.set_task_state(first.run_id, [task], "pending")
        ws.ledger.set_run_status(first.run_id, pipeline.RunState.RUNNING)
        ws.ledger.set_run_status(first.run_id, pipeline.RunState.INTERRUPTED)
    resumed = shardrun.run_job(job)  # the job file still says "auto": it is the same run
    assert resumed.ok and resumed.resumed and resumed.run_id == first.run_id
    assert stored_per_task(first.run_id) == 20
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(40))


def test_run_options_aim_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "numbered").mkdir()
    numbered = lines_job(tmp_path / "numbered")
    assert main(["run", str(numbered), "--deadline", "1h"]) == 2
    assert '--deadline and --budget choose [split] per_task = "auto"' in capsys.readouterr().err
    job = auto_job(tmp_path / "auto")
    assert main(["run", str(job), "--budget", "1"]) == 2  # this machine: no one bills it
    assert "a budget prices a Batch pool" in capsys.readouterr().err
    assert main(["run", str(job), "--deadline", "soon"]) == 2
    assert main(["run", str(job), "--deadline", "10m"]) == 0
    assert 'per_task = "auto": 20 lines per task' in capsys.readouterr().err


# -- more than 10,000 tasks -----------------------------------------------------------------------
def test_validate_warns_of_more_than_ten_thousand_tasks(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    job = lines_job(tmp_path, n_lines=10_001, per_task=1)
    assert main(["validate", str(job)]) == 0
    out = capsys.readouterr().out
    assert ": ok (" in out
    assert f"warning: {job} makes 10,001 tasks ([split] per_task = 1), more than 10,000" in out
    for per_task in ("2", '"auto"'):
        job.write_text(job.read_text().replace("per_task = 1", f"per_task = {per_task}"))
        assert main(["validate", str(job)]) == 0
        assert "warning" not in capsys.readouterr().out
        job.write_text(job.read_text().replace(f"per_task = {per_task}", "per_task = 1"))


def test_a_run_of_many_tasks_says_so_when_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shardrun.core.prepare.MANY_TASKS", 5)  # 10,000 real tasks take too long here
    job = lines_job(tmp_path, n_lines=6, per_task=1)
    said = Said()
    assert shardrun.run_job(job, progress=said).ok
    assert any("has 6 tasks (more than 5)" in m for m in said.messages), said.messages


@pytest.mark.parametrize("method", ["lines", "csv", "json", "files"])
def test_tasks_are_counted_as_the_splitter_makes_them(tmp_path: Path, method: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if method == "lines":
        (data / "a.txt").write_text("1\n2\n3")  # a last line without a newline is a line
        (data / "b.txt").write_text("4\n5\n")
    elif method == "csv":
        (data / "a.csv").write_text('h\n1\n"two\nlines"\n')
        (data / "b.csv").write_text("h\n3\n4\n5\n")
    elif method == "json":
        (data / "a.json").write_text("[1, 2, 3]")
        (data / "b.json").write_text("[4, 5]")
    else:
        for i in range(5):
            (data / f"f{i}").write_text(str(i))
    for per_task in (1, 2, 4):
        job = write_job(tmp_path, {"app": {"command": ["cp", "{input}", "{output}"]},
                                   "split": {"input": "data", "method": method, "per_task": per_task},
                                   "merge": {"output": "out"}})
        spec = load_spec(job)
        out = tmp_path / f"pieces-{method}-{per_task}"
        out.mkdir()
        assert count_input_units(spec) == 5
        assert count_tasks(spec) == len(split_job(spec, out))


def test_an_unknown_pool_size_still_balances(tmp_path: Path) -> None:
    job = write_toml(tmp_path / "job.toml", batch_job(per_task="auto", vm_size="Standard_Unknown_v9"))
    pool, kind, priced = autosize.job_pool(load_spec(job), Calibration(None, None, (), "defaults"))
    assert kind.endswith("Standard_Unknown_v9") and priced and pool.vm.dedicated == 1.0


def test_plan_shows_what_auto_would_choose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = auto_job(tmp_path)
    assert main(["plan", str(job), "--unit-time", "10ms", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert 'the job file says per_task = "auto"' in out and "* = the shard size" not in out
    assert ("on the job's own pool, per_task = \"auto\": 20 lines per task (2 tasks on this machine, "
            "2 at a time") in out
    assert main(["plan", str(job), "--unit-time", "10ms", "--no-plot", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["job_plan"] is None and data["auto"]["per_task"] == 20
