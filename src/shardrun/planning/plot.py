"""The planner's plot: two log-log panels in one self-contained SVG file (templates/plan.svg.j2)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader

from shardrun.planning.plan import Plan, Recommendation, fmt_duration, fmt_money, pareto

_NICE_SECONDS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 3 * 3600, 6 * 3600,
                 12 * 3600, 86400, 2 * 86400, 7 * 86400]
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2"]


@dataclass(frozen=True)
class _Axis:
    lo: float
    hi: float
    start: float  # pixel of lo
    end: float  # pixel of hi

    @classmethod
    def over(cls, values: Iterable[float], start: float, end: float) -> _Axis:
        vals = [v for v in values if v > 0] or [1.0]
        lo, hi = min(vals), max(vals)
        if hi / lo < 2:
            lo, hi = lo / 1.5, hi * 1.5
        return cls(lo / 1.15, hi * 1.15, start, end)

    def __call__(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        frac = math.log(v / self.lo) / math.log(self.hi / self.lo)
        return round(self.start + frac * (self.end - self.start), 1)

    def ticks(self, candidates: Iterable[float], most: int = 7) -> list[float]:
        inside = [c for c in candidates if self.lo <= c <= self.hi]
        step = max(1, math.ceil(len(inside) / most))
        return inside[::step]


def _series_ticks(lo: float, hi: float) -> list[float]:
    out: list[float] = []
    scale = 10.0 ** math.floor(math.log10(max(lo, 1e-9)))
    while scale <= hi * 10:
        out += [scale, 2 * scale, 5 * scale]
        scale *= 10
    return out


def _tick_time(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size:g}{unit}"
    return f"{s:g}s"


def plot_svg(plans: list[Plan], rec: Recommendation, *, title: str, pricing: str = "dedicated",
             deadline: float | None = None, budget: float | None = None) -> str:
    """Left: makespan against task count, one line per node count. Right: cost against makespan.
    `pricing` names how the plans' costs were priced ('dedicated', 'Spot', '25% Spot')."""
    top, bottom = 60.0, 370.0
    times = [p.makespan for p in plans] + ([deadline] if deadline else [])
    costs = [p.cost for p in plans] + ([budget] if budget else [])
    x1 = _Axis.over([p.tasks for p in plans], 80, 470)
    y1 = _Axis.over(times, bottom, top)
    x2 = _Axis.over(times, 590, 960)
    y2 = _Axis.over(costs, bottom, top)
    # One line per node limit: at each task count, the plan with the most nodes up to that limit
    # (a plan never has more nodes than its tasks can keep busy).
    max_nodes = max(p.nodes for p in plans)
    limits = [n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if n < max_nodes]
    limits = [*limits[-5:], max_nodes]
    lines = []
    for color, n in zip(_COLORS, limits, strict=False):
        best: dict[int, Plan] = {}
        for p in plans:
            if p.nodes <= n and (p.tasks not in best or p.nodes > best[p.tasks].nodes):
                best[p.tasks] = p
        pts = [best[t] for t in sorted(best)]
        lines.append({"color": color, "label": f"up to {n} node{'s' if n > 1 else ''}",
                      "points": " ".join(f"{x1(p.tasks)},{y1(p.makespan)}" for p in pts)})
    front = pareto(plans)
    chosen = rec.plan
    ctx = {
        "title": title, "top": top, "bottom": bottom, "lines": lines,
        "x1": [(x1(v), f"{v:g}") for v in x1.ticks(_series_ticks(x1.lo, x1.hi))],
        "y1": [(y1(v), _tick_time(v)) for v in y1.ticks(_NICE_SECONDS)],
        "x2": [(x2(v), _tick_time(v)) for v in x2.ticks(_NICE_SECONDS)],
        "y2": [(y2(v), fmt_money(v)) for v in y2.ticks(_series_ticks(y2.lo, y2.hi))],
        "dots": [(x2(p.makespan), y2(p.cost)) for p in plans],
        "front": " ".join(f"{x2(p.makespan)},{y2(p.cost)}" for p in front),
        "deadline": (y1(deadline), x2(deadline), fmt_duration(deadline)) if deadline else None,
        "budget": (y2(budget), fmt_money(budget)) if budget else None,
        "rec1": (x1(chosen.tasks), y1(chosen.makespan)) if chosen else None,
        "rec2": (x2(chosen.makespan), y2(chosen.cost)) if chosen else None,
        "rec_label": (f"{chosen.tasks:,} tasks on {chosen.nodes} node{'s' if chosen.nodes > 1 else ''}: "
                      f"{fmt_duration(chosen.makespan)}, "
                      f"{fmt_money(chosen.cost)}") if chosen else rec.why,
        "price_kind": pricing,
    }
    env = Environment(loader=PackageLoader("shardrun", "templates"), autoescape=True)
    return env.get_template("plan.svg.j2").render(**ctx)
