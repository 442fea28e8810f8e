"""The cost/makespan planner: how long a job takes and what it costs, per shard size and node count.

docs/planner.md explains the model and its limits. In short, for U units of work split into tasks of
u units, on N nodes with S task slots each:

    task time  d  = per-task overhead + app start + u * time per unit
    tasks      T  = ceil(U / u), run in waves of N*S
    makespan      = autoscale lag + node start-up + waves * d
    node-hours    = N * (node start-up + waves * d + autoscale tail)
    cost          = node-hours * hourly_price(VM, Spot share)

hourly_price is the one price of a node-hour in shardrun: `status` and `report` price a run with it.

The measured inputs (time per unit, app start) come from shardrun.planning.measure; the rest are flags.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from shardrun.core.errors import UsageError
from shardrun.core.spec import JobSpec
from shardrun.planning.workload import Workload
from shardrun.providers.azure.prices import (
    PRICES_AS_OF,
    PRICES_SOURCE,
    VmPrice,
    hourly_price,
    mix_label,
)


@dataclass(frozen=True)
class Pool:
    """The nodes. `autoscale_interval` 0 means a fixed-size pool created for the run; `spot_share` is
    the share (0..1) of its nodes that are Spot nodes, as in the job's [batch] section. `fixed`: the
    pool has exactly `max_nodes` nodes whatever the tasks (the job's own fixed-size pool, or this
    machine); otherwise a run gets as many nodes as its tasks keep busy, up to `max_nodes`."""

    vm: VmPrice
    startup: float = 300.0
    task_overhead: float = 2.0
    slots: int = 1
    max_nodes: int = 10
    autoscale_interval: float = 0.0
    spot_share: float = 0.0
    fixed: bool = False

    @property
    def pricing(self) -> str:
        return mix_label(self.spot_share)

    def nodes_for(self, tasks: int) -> int:
        """The nodes a run of `tasks` tasks gets on this pool."""
        return self.max_nodes if self.fixed else max(1, min(self.max_nodes, math.ceil(tasks / self.slots)))


@dataclass(frozen=True)
class Plan:
    units_per_task: int
    tasks: int
    nodes: int
    slots: int
    task_seconds: float
    makespan: float
    node_hours: float
    cost: float  # at the pool's Spot share: what plans are judged by
    dedicated_cost: float  # the same node-hours all dedicated, and all Spot, to compare
    spot_cost: float
    utilization: float


def node_hours_cost(node_hours: float, vm: VmPrice, spot_share: float) -> float:
    """USD for node-hours on a pool with that Spot share, priced as `status` and `report` price a run."""
    return node_hours * hourly_price(vm, spot_share)


def estimate(work: Workload, pool: Pool, units_per_task: int, nodes: int) -> Plan:
    """Makespan and cost of one plan. Tasks are equal but the last, which holds what is left."""
    u = max(1, min(units_per_task, work.units))
    tasks = math.ceil(work.units / u)
    last_units = work.units - (tasks - 1) * u
    fixed = pool.task_overhead + work.app_start_seconds
    d = fixed + u * work.unit_seconds
    d_last = fixed + last_units * work.unit_seconds
    width = nodes * pool.slots
    waves = math.ceil(tasks / width)
    # The short last task runs alone in the last wave only when that wave holds nothing else.
    compute = (waves - 1) * d + (d_last if tasks - (waves - 1) * width == 1 else d)
    lag = pool.autoscale_interval  # autoscale sees the tasks at its next evaluation
    tail = pool.autoscale_interval  # and removes idle nodes only at a later one
    makespan = lag + pool.startup + compute
    node_hours = nodes * (pool.startup + compute + tail) / 3600
    busy = (tasks - 1) * d + d_last
    return Plan(
        units_per_task=u, tasks=tasks, nodes=nodes, slots=pool.slots, task_seconds=d,
        makespan=makespan, node_hours=node_hours,
        cost=node_hours_cost(node_hours, pool.vm, pool.spot_share),
        dedicated_cost=node_hours_cost(node_hours, pool.vm, 0.0),
        spot_cost=node_hours_cost(node_hours, pool.vm, 1.0),
        utilization=busy / (width * compute) if compute > 0 else 1.0,
    )


def series(limit: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to `limit`, and `limit` itself."""
    out: list[int] = []
    scale = 1
    while scale <= limit:
        out += [v for v in (scale, 2 * scale, 5 * scale) if v <= limit]
        scale *= 10
    return sorted({*out, limit})


def plan_grid(work: Workload, pool: Pool) -> list[Plan]:
    """Every plan worth comparing: shard sizes on a 1-2-5 series (and the job file's own), and for each,
    every node count that is the fewest giving its number of waves (more nodes, same waves: no faster,
    dearer). So no plan has more nodes than its tasks can keep busy.
    """
    if work.units < 1:
        raise UsageError("the job has no units of work to plan")
    own = [min(work.job_per_task, work.units)] if work.job_per_task else []
    sizes = sorted({*series(work.units), *own})
    plans = []
    seen_tasks: set[int] = set()
    for u in sizes:
        tasks = math.ceil(work.units / u)
        if tasks in seen_tasks:
            continue  # a bigger shard size that gives the same task count changes nothing
        seen_tasks.add(tasks)
        for n in range(1, min(pool.max_nodes, math.ceil(tasks / pool.slots)) + 1):
            waves = math.ceil(tasks / (n * pool.slots))
            if n == math.ceil(tasks / (waves * pool.slots)):
                plans.append(estimate(work, pool, u, n))
    return plans


def same_time(a: float, b: float) -> bool:
    """Makespans within 1% or a second of each other are too close to choose between."""
    return abs(a - b) <= max(1.0, 0.01 * max(a, b))


def pareto(plans: Iterable[Plan]) -> list[Plan]:
    """Plans no other plan beats on both makespan and cost, fastest first.

    Of plans that are about as fast (same_time), only the cheapest is kept.
    """
    frontier: list[Plan] = []
    for p in sorted(plans, key=lambda p: (p.makespan, p.cost)):
        if frontier and same_time(p.makespan, frontier[-1].makespan):
            if p.cost < frontier[-1].cost - 1e-12:
                frontier[-1] = p  # still cheaper than every faster plan kept before it
            continue
        if not frontier or p.cost < frontier[-1].cost - 1e-12:
            frontier.append(p)
    return frontier


@dataclass(frozen=True)
class Recommendation:
    plan: Plan | None
    why: str
    met: bool = True
    alternatives: dict[str, Plan] = field(default_factory=dict)


def recommend(
    plans: list[Plan], *, deadline: float | None = None, budget: float | None = None,
    pricing: str = "dedicated",
) -> Recommendation:
    """The cheapest plan that meets the deadline, or the fastest within the budget (or both).
    Plans are judged by their `cost`; `pricing` names it in the reason ('dedicated', 'Spot', ...)."""
    fastest = min(plans, key=lambda p: (p.makespan, p.cost))
    cheapest = min(plans, key=lambda p: (p.cost, p.makespan))
    extremes = {"fastest": fastest, "cheapest": cheapest}
    ok = [p for p in plans
          if (deadline is None or p.makespan <= deadline) and (budget is None or p.cost <= budget)]
    if deadline is None and budget is None:
        # No constraint given: the knee of the curve, where time times money is smallest.
        best = min(plans, key=lambda p: (p.makespan * p.cost, p.makespan))
        return Recommendation(best, f"balanced plan (smallest makespan x {pricing} cost); "
                                    "give --deadline or --budget to choose", True, extremes)
    if not ok:
        parts = []
        if deadline is not None and fastest.makespan > deadline:
            parts.append(f"the fastest plan takes {fmt_duration(fastest.makespan)} "
                         f"(deadline {fmt_duration(deadline)})")
        if budget is not None and cheapest.cost > budget:
            parts.append(f"the cheapest plan costs {fmt_money(cheapest.cost)} "
                         f"(budget {fmt_money(budget)})")
        if not parts:
            parts.append("no single plan meets both the deadline and the budget")
        return Recommendation(None, "no plan fits: " + "; ".join(parts), False, extremes)
    if deadline is not None:
        best = min(ok, key=lambda p: (p.cost, p.makespan))
        why = f"cheapest plan ({pricing} price) that finishes within {fmt_duration(deadline)}"
        if budget is not None:
            why += f" and costs at most {fmt_money(budget)}"
    else:
        assert budget is not None
        quickest = min(p.makespan for p in ok)
        near = [p for p in ok if same_time(p.makespan, quickest)]
        best = min(near, key=lambda p: (p.cost, p.makespan))
        why = f"fastest plan whose {pricing} cost is at most {fmt_money(budget)}"
    return Recommendation(best, why, True, extremes)


def job_plan(work: Workload, pool: Pool) -> Plan | None:
    """The job file's own shard size on the pool, on the nodes its tasks get (None: "auto")."""
    if work.job_per_task is None:
        return None
    u = max(1, min(work.job_per_task, work.units))
    return estimate(work, pool, u, pool.nodes_for(math.ceil(work.units / u)))


def table_rows(plans: list[Plan], chosen: Plan | None, limit: int = 14,
               own: Plan | None = None) -> list[Plan]:
    """The Pareto plans to show, thinned evenly to `limit` rows, always with the chosen one and the
    job file's own (`own`), even when no other plan is beaten by it."""
    front = pareto(plans)
    if len(front) > limit:
        step = (len(front) - 1) / (limit - 1)
        front = [front[round(i * step)] for i in range(limit)]
    for extra in (chosen, own):
        if extra is not None and extra not in front:
            front = sorted([*front, extra], key=lambda p: p.makespan)
    return front


def fmt_duration(seconds: float) -> str:
    """Short and readable: 3.2ms, 150ms, 5.0s, 42s, 1m05s, 2h10m, 1d03h."""
    s = max(0.0, seconds)
    if s < 0.9995:
        return f"{s * 1000:.0f}ms" if s >= 0.01 or s == 0 else f"{s * 1000:.1f}ms"
    if s < 59.5:
        return f"{s:.1f}s" if s < 9.95 else f"{s:.0f}s"
    if s < 3599.5:
        m, sec = divmod(round(s), 60)
        return f"{m}m{sec:02d}s"
    if s < 86370:
        h, m = divmod(round(s / 60), 60)
        return f"{h}h{m:02d}m"
    d, h = divmod(round(s / 3600), 24)
    return f"{d}d{h:02d}h"


def fmt_money(usd: float) -> str:
    if usd >= 0.995:
        return f"${usd:,.2f}"
    if usd >= 0.01 or usd <= 0:
        return f"${max(usd, 0):.3f}"
    return f"${usd:.{1 - math.floor(math.log10(usd))}f}"  # two significant digits, never 1e-05


def to_json(work: Workload, pool: Pool, plans: list[Plan], rec: Recommendation,
            **extra: Any) -> dict[str, Any]:
    """What `plan --json` prints; `extra` adds keys (the job's own plan, the calibration)."""
    return {
        "workload": asdict(work),
        "pool": asdict(pool),
        "prices_as_of": PRICES_AS_OF,
        "prices_source": PRICES_SOURCE,
        "pricing": pool.pricing,
        "usd_per_node_hour": round(hourly_price(pool.vm, pool.spot_share), 4),
        "plans": [asdict(p) for p in pareto(plans)],
        "recommended": asdict(rec.plan) if rec.plan else None,
        "why": rec.why,
        "met": rec.met,
        "job_plan": asdict(own) if (own := job_plan(work, pool)) else None,
        **extra,
    }



def workload_for(spec: JobSpec, *, unit_time: float | None = None, samples: int = 3,
                 sample_timeout: float = 60.0) -> Workload:
    """Measure the job (split it, time the app on samples), or only count its units if the time is given."""
    from shardrun.planning.measure import count_work, measure_workload

    if unit_time is None:
        return measure_workload(spec, samples=samples, timeout=sample_timeout)
    units, per_task, unit_name = count_work(spec)
    return Workload(units=units, unit_seconds=unit_time, job_per_task=per_task, unit_name=unit_name)


def describe(work: Workload, pool: Pool, overhead_basis: str = "") -> list[str]:
    """What the plan rests on, in a few lines the user can check; `overhead_basis` says where the
    start-up and per-task overhead come from (calibrated, given or defaults)."""
    vm = pool.vm
    timing = f"{fmt_duration(work.unit_seconds)} per {work.unit_name[:-1] or 'unit'}"
    if work.app_start_seconds:
        timing += f" + {fmt_duration(work.app_start_seconds)} app start"
    mode = (f"autoscale every {fmt_duration(pool.autoscale_interval)}" if pool.autoscale_interval
            else "fixed-size pool")
    own = (f"the job file puts {work.job_per_task} per task" if work.job_per_task is not None
           else 'the job file says per_task = "auto"')
    return [
        f"work: {work.units:,} {work.unit_name}; {timing} ({work.how}); {own}",
        f"VM: {vm.size}, {vm.vcpus} vCPU, {fmt_money(vm.dedicated)}/h dedicated, "
        f"{fmt_money(vm.spot)}/h Spot; plans priced {pool.pricing}, "
        f"{fmt_money(hourly_price(vm, pool.spot_share))} per node-hour "
        f"(prices as of {PRICES_AS_OF}: {PRICES_SOURCE})",
        f"pool: node start-up {fmt_duration(pool.startup)}, {fmt_duration(pool.task_overhead)} per-task "
        f"overhead, {pool.slots} task slots per node, up to {pool.max_nodes} nodes, {mode}"
        + (f" ({overhead_basis})" if overhead_basis else ""),
    ]
