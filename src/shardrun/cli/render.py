"""Rich renderings of data the library returns: the planner's rows become a table here, not there."""

from __future__ import annotations

from collections.abc import Callable

from rich.table import Table

from shardrun.planning.plan import Plan, fmt_duration, fmt_money


def plan_table(rows: list[Plan], chosen: Plan | None, job_per_task: int | None, pricing: str) -> Table:
    """The planner's rows: the cost the plans are judged by first (priced `pricing`), then the same
    node-hours all dedicated and all Spot where that differs. Rows of the job file's shard size are
    marked `*` (none when it says "auto")."""
    costs: list[tuple[str, Callable[[Plan], float]]] = [(pricing, lambda p: p.cost)]
    costs += [(name, cost) for name, cost in (("dedicated", lambda p: p.dedicated_cost),
                                              ("Spot", lambda p: p.spot_cost)) if name != pricing]
    table = Table(title="Plans no other plan beats on both time and cost", title_justify="left")
    for name in ("tasks", "per task", "nodes", "task time", "makespan", *(n for n, _ in costs), "busy"):
        table.add_column(name, justify="right")
    for p in rows:
        mark = " *" if p.units_per_task == job_per_task else ""
        table.add_row(
            f"{p.tasks:,}{mark}", f"{p.units_per_task:,}", str(p.nodes), fmt_duration(p.task_seconds),
            fmt_duration(p.makespan), *(fmt_money(cost(p)) for _, cost in costs),
            f"{p.utilization:.0%}", style="bold green" if p == chosen else None,
        )
    return table
