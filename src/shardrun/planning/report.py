"""`shardrun report RUN`: one self-contained HTML file showing what a run did.

It reads the ledger (runs, tasks, attempts) and the stored stderr of failed tasks, and renders
templates/report.html.j2: a summary with the run's cost (its provider's, the same as `status`
shows, or for a run on this machine an estimate priced the same way), a timeline with one bar per attempt
(drawn by inline JavaScript from compact column arrays, so 10,000 attempts stay small and fast), a
histogram of attempt durations, the slowest tasks and the failed tasks with the tail of their stderr.
Nothing is fetched from the network when the file is opened.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from shardrun.core import layout
from shardrun.core.errors import UsageError
from shardrun.core.provider import Cost
from shardrun.core.run import Run, open_run
from shardrun.core.states import retry_flags
from shardrun.core.status import run_cost
from shardrun.core.workspace import Workspace
from shardrun.planning.plan import fmt_duration, fmt_money
from shardrun.planning.run_figures import Slots, figures
from shardrun.providers.azure.prices import (
    BUSY_BASIS,
    DEFAULT_VM,
    busy_cost,
    choose_vm,
    estimate_cost,
)
from shardrun.providers.azure.settings import batch_settings, pool_settings

RESULTS = ("succeeded", "failed", "timeout", "lost", "interrupted", "running")
FAILED_SHOWN = 100  # failed tasks listed with their stderr; the rest are counted
SLOWEST_SHOWN = 15
STDERR_LINES = 30
STDERR_CHARS = 4000
HIST_BINS = 30


@dataclass(frozen=True)
class ReportCost:
    """The cost the report shows: the run's provider's (a cloud run), or an estimate (this machine)."""

    cost: Cost
    estimated: bool
    note: str  # how it was counted, in a sentence or two for the page


def _natural(text: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def report_cost(run: Run, attempts: Sequence[Mapping[str, Any]], now: float, *,
                vm_size: str | None = None, price: float | None = None) -> ReportCost:
    """The provider's cost of a cloud run (what `status --json` shows, unless `price` replaces the
    table's hourly price); for a run on this machine, which costs nothing, what one node of `vm_size`
    would have cost, priced the same way."""
    own = run_cost(run, attempts, now)
    if own is not None:
        if vm_size is not None:
            raise UsageError(f"run {run.run_id} ran on {run.row.backend} as {own.vm_size}; "
                             "--vm prices only runs on this machine (give --price to reprice it)")
        if price is not None:
            own = busy_cost(own.vm_size, price, attempts, now, basis=f"{BUSY_BASIS}, at the price given")
        return ReportCost(own, False, _provider_note(run.run_id, own))
    settings = batch_settings(run.spec)
    vm = choose_vm(vm_size or (settings.vm_size if settings else DEFAULT_VM), price=price)
    cost = estimate_cost(vm, attempts, now)
    return ReportCost(cost, True, (
        f"An estimate: this run ran on this machine, which costs nothing more. Priced as one dedicated "
        f"{cost.vm_size} node busy from the first attempt's start to the last attempt's end, at "
        f"{fmt_money(cost.usd_per_node_hour or 0.0)}/h (prices as of {cost.prices_as_of}); "
        f"shardrun report {run.run_id} --vm SIZE or --price USD changes it."))


def _provider_note(run_id: str, cost: Cost) -> str:
    if cost.usd is None:
        return (f"Cost unknown: {cost.basis}. shardrun report {run_id} --price USD prices its "
                f"{cost.node_hours:.2f} node-hours.")
    return (f"Cost = {cost.basis}: {cost.nodes} node(s) of {cost.vm_size} at "
            f"{fmt_money(cost.usd_per_node_hour or 0.0)}/h, prices as of {cost.prices_as_of}. The same "
            f"figure as shardrun status {run_id} --json. Node start-up and idle time are not in the "
            "ledger, so the nodes cost at least this.")


def configured_slots(run: Run, attempts: Sequence[Mapping[str, Any]], tasks: int) -> Slots:
    """The run's task slots: nodes x task slots per node on Azure Batch (the nodes its attempts ran
    on), else its concurrency (at most one slot per task)."""
    settings = pool_settings(run.spec, run.row.backend)
    if settings is not None:
        nodes = len({str(a["worker"] or "").split("/", 1)[0] for a in attempts if a["worker"]})
        per = settings.task_slots_per_node
        return Slots(nodes * per, f"{nodes} node{'s' if nodes != 1 else ''} x {per} task "
                                  f"slot{'s' if per != 1 else ''}")
    concurrency = run.spec.concurrency
    if 0 < tasks < concurrency:
        return Slots(tasks, f"concurrency {concurrency}, {tasks} tasks")
    return Slots(concurrency, f"concurrency {concurrency}")


DEFINITIONS = (
    "Wall time is the time the run was at work: from its start to its first attempt (splitting, "
    "uploading, starting nodes), plus every stretch in which at least one attempt ran. Stretches in "
    "which none ran (the idle gap before a later retry or resume) are left out, and so is the merge, "
    "which the ledger does not time. A retry is an attempt after a failed or timed-out one; an "
    "attempt after one interrupted or lost when the client stopped is the run resuming. Busy is "
    "task time over the task slots (nodes x slots per node on Azure Batch, the concurrency "
    "elsewhere) for the time tasks ran. Attempts lost when the client stopped have no known end "
    "and count in none of these times.")


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    lines = text.rstrip().splitlines()[-STDERR_LINES:]
    out = "\n".join(lines)
    return out[-STDERR_CHARS:]


def _axis_time(seconds: float, top: float) -> str:
    """Tick labels precise enough to differ from their neighbours (ticks are top/5 apart)."""
    if top < 0.05:
        return f"{seconds * 1000:.1f}ms"
    if top < 1:
        return f"{seconds * 1000:.0f}ms"
    if top < 20:
        return f"{seconds:.1f}s"
    return fmt_duration(seconds)


def _histogram(durations: list[tuple[float, bool]], width: float = 520,
               height: float = 160) -> dict[str, Any]:
    """Stacked bins of attempt durations (succeeded below, the rest above), as SVG geometry."""
    if not durations:
        return {"bars": [], "ticks": [], "width": width, "height": height, "max": 0}
    top = max(d for d, _ in durations) or 1.0
    size = top / HIST_BINS
    ok = [0] * HIST_BINS
    bad = [0] * HIST_BINS
    for d, good in durations:
        i = min(HIST_BINS - 1, int(d / size))
        (ok if good else bad)[i] += 1
    peak = max(o + b for o, b in zip(ok, bad, strict=True)) or 1
    bw = width / HIST_BINS
    bars = []
    for i in range(HIST_BINS):
        h_ok = ok[i] / peak * height
        h_bad = bad[i] / peak * height
        bars.append({
            "x": round(i * bw, 1), "w": round(bw - 1, 1),
            "y_ok": round(height - h_ok, 1), "h_ok": round(h_ok, 1),
            "y_bad": round(height - h_ok - h_bad, 1), "h_bad": round(h_bad, 1),
            "title": f"{fmt_duration(i * size)}-{fmt_duration((i + 1) * size)}: "
                     f"{ok[i]} succeeded, {bad[i]} other",
        })
    ticks = [(round(i * width / 5, 1), _axis_time(top * i / 5, top)) for i in range(6)]
    return {"bars": bars, "ticks": ticks, "width": width, "height": height, "max": peak}


def _script_json(data: Any) -> Markup:
    """JSON that is safe inside <script>: no '<', '>' or '&' can end the element early."""
    text = json.dumps(data, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script context


def collect(ws: Workspace, run_id: str, *, vm_size: str | None = None, price: float | None = None,
            now: float | None = None) -> dict[str, Any]:
    """Everything the template shows, from the ledger and the stored logs."""
    now = now or time.time()
    handle = open_run(ws, run_id)
    run = handle.row
    tasks = ws.ledger.tasks(run_id)
    attempts = ws.ledger.attempts(run_id)
    counts = ws.ledger.counts(run_id)
    task_index = {t.task_id: i for i, t in enumerate(tasks)}
    workers = sorted({a["worker"] or "?" for a in attempts}, key=_natural)
    worker_index = {w: i for i, w in enumerate(workers)}
    t0 = min((a["started_at"] for a in attempts), default=run.created_at)

    cols: dict[str, list[Any]] = {k: [] for k in ("w", "s", "d", "r", "t", "a", "x", "m")}
    cols["y"] = [int(flag) for flag in retry_flags(attempts)]  # 1: a retry (outlined)
    reasons: list[str] = []
    reason_index: dict[str, int] = {}
    durations: list[tuple[float, bool]] = []
    longest: dict[str, tuple[float, dict[str, Any]]] = {}
    for a in attempts:
        end = a["ended_at"] if a["ended_at"] is not None else now
        dur = max(0.0, end - a["started_at"])
        result = a["result"] if a["result"] in RESULTS else "lost"
        reason = a["reason"] or ""
        if reason not in reason_index:
            reason_index[reason] = len(reasons)
            reasons.append(reason)
        cols["w"].append(worker_index[a["worker"] or "?"])
        cols["s"].append(round(a["started_at"] - t0, 3))
        cols["d"].append(round(dur, 3))
        cols["r"].append(RESULTS.index(result))
        cols["t"].append(task_index.get(a["task_id"], -1))
        cols["a"].append(a["attempt"])
        cols["x"].append(a["exit_code"])
        cols["m"].append(reason_index[reason])
        if a["ended_at"] is not None:
            durations.append((dur, result == "succeeded"))
        if a["task_id"] not in longest or dur > longest[a["task_id"]][0]:
            longest[a["task_id"]] = (dur, a)
    span = max((s + d for s, d in zip(cols["s"], cols["d"], strict=True)), default=0.0)
    figs = figures(attempts, run.created_at, now, configured_slots(handle, attempts, len(tasks)))
    cost = report_cost(handle, attempts, now, vm_size=vm_size, price=price)
    by_task = {t.task_id: t for t in tasks}
    per_task_attempts = Counter(a["task_id"] for a in attempts)

    slowest = []
    for task_id, (dur, a) in sorted(longest.items(), key=lambda kv: -kv[1][0])[:SLOWEST_SHOWN]:
        t = by_task.get(task_id)
        slowest.append({"task_id": task_id, "duration": fmt_duration(dur), "seconds": dur,
                        "attempt": a["attempt"], "attempts": per_task_attempts[task_id],
                        "worker": a["worker"] or "?", "result": a["result"],
                        "state": t.state if t else "?", "input_size": t.input_size if t else None})

    failed_rows = [t for t in tasks if t.state == "failed"]
    store, store_error = None, ""
    if failed_rows:
        try:
            store = handle.store
        except Exception as err:  # the report still shows everything else without the logs
            store_error = f"(stderr not available: cannot open storage {run.storage!r}: {err})"
    failed = []
    last_attempt = {a["task_id"]: a for a in attempts}  # attempts are ordered by task, attempt
    for t in failed_rows[:FAILED_SHOWN]:
        last = last_attempt.get(t.task_id, {})
        number = int(last.get("attempt") or t.attempts or 1)
        stderr = store_error
        if store is not None:
            try:
                stderr = _tail(store.get_bytes(layout.log_key(run_id, t.task_id, number, "stderr")))
            except FileNotFoundError:
                stderr = ""
            except Exception as err:
                stderr = f"(stderr not available: {err})"
        failed.append({"task_id": t.task_id, "attempts": t.attempts,
                       "reason": last.get("reason") or "unknown", "exit_code": last.get("exit_code"),
                       "worker": last.get("worker") or "?", "stderr": stderr})

    resumed = f"; {figs.resumed:,} resumed after the client stopped" if figs.resumed else ""
    idle = (f"; {fmt_duration(figs.elapsed_seconds)} from start to last attempt, "
            f"{fmt_duration(figs.idle_seconds)} of it idle") if figs.idle_seconds >= 1 else ""
    busy = (f"{figs.busy_share:.0%} of {figs.slots.count} task slots busy ({figs.slots.basis})"
            if figs.busy_share is not None else "")
    summary = [
        ("tasks", f"{len(tasks):,}", f"{counts['succeeded']:,} succeeded"),
        ("failed", f"{counts['failed']:,}", f"{counts['pending'] + counts['running']:,} not finished"),
        ("retries", f"{figs.retries:,}", f"{len(attempts):,} attempts in all{resumed}"),
        ("wall time", fmt_duration(figs.wall_seconds),
         f"{fmt_duration(figs.prep_seconds)} to the first attempt + "
         f"{fmt_duration(figs.running_seconds)} with tasks running{idle}"),
        ("total task time", fmt_duration(figs.task_seconds), busy),
        ("cost" + (" (estimated)" if cost.estimated else ""),
         "unknown" if cost.cost.usd is None else fmt_money(cost.cost.usd),
         f"{cost.cost.nodes} x {cost.cost.vm_size}, "
         f"{fmt_duration(cost.cost.node_hours * 3600)} busy node time"),
    ]
    return {
        "run": run, "generated": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created_at)),
        "summary": summary, "cost": cost, "definitions": DEFINITIONS, "figures": figs,
        "hist": _histogram(durations), "slowest": slowest, "failed": failed,
        "failed_total": len(failed_rows), "attempt_count": len(attempts), "worker_count": len(workers),
        "timeline": _script_json({
            "workers": workers, "tasks": [t.task_id for t in tasks], "results": list(RESULTS),
            "reasons": reasons, "span": round(span, 3), **cols,
        }),
    }


def render_report(context: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("shardrun", "templates"), autoescape=True)
    env.filters["duration"] = fmt_duration
    return env.get_template("report.html.j2").render(**context)


def write_report(run_id: str, output: Path | str | None = None, *, home: Path | str | None = None,
                 vm_size: str | None = None, price: float | None = None) -> Path:
    """Write the run's report and return its path (default: RUN.report.html in this folder)."""
    ws = Workspace(home)
    try:
        html = render_report(collect(ws, run_id, vm_size=vm_size, price=price))
    finally:
        ws.close()
    path = Path(output) if output else Path(f"{run_id}.report.html")
    path.write_text(html, encoding="utf-8")
    return path
