"""`[split] per_task = "auto"`: the planner chooses the shard size when a new run starts.

It measures the job as `shardrun plan` does (its own splitter and app on samples, here), calibrates
start-up and per-task overhead from the ledger (calibrate.py), and models the pool the job will run
on: its [batch] pool (fixed size, or autoscale up to max_nodes), or for any other backend this
machine, one node with [run] concurrency task slots. Of the shard sizes it tries it takes the
balanced plan (the smallest makespan x cost), or the cheapest that meets a deadline, or the fastest
within a budget. Core calls `shard_sizer(...)` through the pipeline's ShardSizer hook, so core never
imports the planner; the chosen size goes into the spec the ledger stores, so a resume or a retry
never measures again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shardrun.core.errors import UsageError
from shardrun.core.ledger import Ledger
from shardrun.core.prepare import MANY_TASKS, ShardSizer
from shardrun.core.progress import ProgressView
from shardrun.core.spec import JobSpec
from shardrun.planning.calibrate import Calibration, calibrate
from shardrun.planning.measure import count_tasks, measure_workload
from shardrun.planning.plan import (
    Plan,
    Pool,
    Recommendation,
    estimate,
    fmt_duration,
    fmt_money,
    recommend,
    series,
)
from shardrun.planning.workload import Workload
from shardrun.providers.azure.prices import DEFAULT_VM, VmPrice, choose_vm, spot_share, vm_price
from shardrun.providers.azure.settings import pool_settings

# This machine, without history: nothing to boot, and a guess for the set-up between two tasks.
LOCAL_STARTUP = 0.0
LOCAL_TASK_OVERHEAD = 0.1
WHOLE_WAVES = 8  # sizes that fill 1..8 waves of the pool's slots exactly are tried too


def _priced(size: str) -> VmPrice:
    """The size's prices; a size the table lacks is priced 1 per node-hour, which leaves the balanced
    plan and the cheapest one within a deadline unchanged (a budget needs the real price)."""
    try:
        return vm_price(size)
    except UsageError:
        return choose_vm(size, price=1.0)


def job_pool(spec: JobSpec, calibration: Calibration) -> tuple[Pool, str, bool]:
    """The pool the job runs on, with calibrated figures where there are any; its description; and
    whether it is billed (a Batch pool) or not (this machine)."""
    batch = pool_settings(spec)
    if batch is not None:
        fixed = not batch.autoscale
        nodes = batch.dedicated_nodes + batch.spot_nodes if fixed else batch.max_nodes
        pool = Pool(vm=_priced(batch.vm_size), slots=batch.task_slots_per_node, max_nodes=max(1, nodes),
                    autoscale_interval=0.0 if fixed else batch.autoscale_interval,
                    spot_share=spot_share(batch), fixed=fixed)
        kind = f"{nodes} x {batch.vm_size}" + ("" if fixed else " (autoscale)")
        priced = True
    else:
        vm = choose_vm(DEFAULT_VM)
        pool = Pool(vm=vm, startup=LOCAL_STARTUP, task_overhead=LOCAL_TASK_OVERHEAD,
                    slots=spec.concurrency, max_nodes=1, fixed=True)
        kind = f"this machine, {spec.concurrency} at a time"
        priced = False  # the plans' node-hours weigh time here; no one bills them
    startup = pool.startup if calibration.startup is None else calibration.startup
    overhead = pool.task_overhead if calibration.task_overhead is None else calibration.task_overhead
    return Pool(vm=pool.vm, startup=startup, task_overhead=overhead, slots=pool.slots,
                max_nodes=pool.max_nodes, autoscale_interval=pool.autoscale_interval,
                spot_share=pool.spot_share, fixed=pool.fixed), kind, priced


def auto_sizes(work: Workload, pool: Pool) -> list[int]:
    """Shard sizes to try: the 1-2-5 series, and the sizes that fill whole waves of the pool."""
    width = pool.slots * pool.max_nodes
    waves = {math.ceil(work.units / (k * width)) for k in range(1, WHOLE_WAVES + 1)}
    return sorted({*series(work.units), *(u for u in waves if u >= 1)})


class NoSizeFits(UsageError):
    """No shard size meets the deadline or the budget on the job's pool; `why` says by how much."""

    def __init__(self, spec: JobSpec, why: str) -> None:
        super().__init__(f'{spec.source}: [split] per_task = "auto": {why}')
        self.why = why


@dataclass(frozen=True)
class AutoChoice:
    plan: Plan
    why: str
    pool: Pool
    pool_kind: str
    priced: bool
    work: Workload
    calibration: Calibration

    def line(self) -> str:
        """What was chosen and why, in one line."""
        p, work = self.plan, self.work
        cost = f", {fmt_money(p.cost)}" if self.priced else ""
        return (f'per_task = "auto": {p.units_per_task:,} {work.unit_name} per task ({p.tasks:,} tasks on '
                f"{self.pool_kind}; predicted {fmt_duration(p.makespan)}{cost}): {self.why}; "
                f"app {fmt_duration(work.unit_seconds)} per unit + {fmt_duration(work.app_start_seconds)} "
                f"start ({work.how}); start-up {fmt_duration(self.pool.startup)}, per-task overhead "
                f"{fmt_duration(self.pool.task_overhead)} ({self.calibration.how})")


def choose(work: Workload, pool: Pool, *, deadline: float | None = None,
           budget: float | None = None) -> tuple[Plan | None, Recommendation]:
    """The plan of each shard size on this pool (its node count is the pool's), and the choice."""
    plans = []
    for u in auto_sizes(work, pool):
        plans.append(estimate(work, pool, u, pool.nodes_for(math.ceil(work.units / u))))
    rec = recommend(plans, deadline=deadline, budget=budget, pricing=pool.pricing)
    return rec.plan, rec


def choose_for_job(spec: JobSpec, ledger: Ledger, work: Workload, *, deadline: float | None = None,
                   budget: float | None = None) -> AutoChoice:
    """The shard size "auto" gives this job, from its measured work; UsageError if none fits."""
    calibration = calibrate(ledger, spec, work, backend=spec.run.backend)
    pool, kind, priced = job_pool(spec, calibration)
    if budget is not None and not priced:
        raise NoSizeFits(spec, f"a budget prices a Batch pool; this job runs on {spec.run.backend}, "
                               "which no one bills")
    plan, rec = choose(work, pool, deadline=deadline, budget=budget)
    if plan is None:
        raise NoSizeFits(spec, rec.why)
    if deadline is None and budget is None:
        why = "the balanced plan (smallest makespan x cost)" if priced else "the fastest plan here"
    else:
        why = rec.why
    return AutoChoice(plan, why, pool, kind, priced, work, calibration)


def sized(spec: JobSpec, ledger: Ledger, *, deadline: float | None = None,
          budget: float | None = None) -> tuple[JobSpec, AutoChoice]:
    """The spec with per_task = "auto" replaced by the chosen size, and the choice."""
    work = measure_workload(spec, timeout=spec.run.timeout or 60.0)
    choice = choose_for_job(spec, ledger, work, deadline=deadline, budget=budget)
    split = spec.split.model_copy(update={"per_task": choice.plan.units_per_task})
    return spec.model_copy(update={"split": split}), choice


def choose_shard_size(spec: JobSpec, ledger: Ledger, view: ProgressView, *,
                      deadline: float | None = None, budget: float | None = None) -> JobSpec:
    """sized(), saying what was chosen and why on `view`."""
    spec, choice = sized(spec, ledger, deadline=deadline, budget=budget)
    view.message(choice.line())
    return spec


def shard_sizer(*, deadline: float | None = None, budget: float | None = None) -> ShardSizer:
    """The pipeline's hook for per_task = "auto", aiming at a deadline or a budget if given."""

    def size(spec: JobSpec, ledger: Ledger, view: ProgressView) -> JobSpec:
        return choose_shard_size(spec, ledger, view, deadline=deadline, budget=budget)

    return size


def many_tasks_warning(spec: JobSpec) -> str | None:
    """A warning when the job file makes more than MANY_TASKS tasks (counted without splitting)."""
    tasks = count_tasks(spec)
    if tasks is None or tasks <= MANY_TASKS:
        return None
    return (f"warning: {spec.source} makes {tasks:,} tasks ([split] per_task = {spec.split.per_task}), "
            f"more than {MANY_TASKS:,}: each task costs scheduling and transfers; set a larger "
            'per_task, or per_task = "auto" to let the planner choose')
