"""CLI commands that plan, report and build images: `shardrun plan`, `report`, `image build|push`.

Registered on the `cli` group of shardrun.cli.commands, which stays the one entry point and error edge.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shardrun.cli.app import _home, cli, out

if TYPE_CHECKING:
    from shardrun.planning.calibrate import Calibration


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Option callback: '90s', '10m', '1h30m' or seconds -> seconds."""
    if value is None:
        return None
    from shardrun.core.spec import parse_duration

    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


DURATION: dict[str, Any] = {"type": str, "callback": _seconds, "metavar": "DURATION"}


@cli.command()
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="HTML file to write [default: RUN.report.html here].")
@click.option("--vm", "vm_size", help="A run on this machine: the VM size its estimate is priced as "
              "[default: the job's [batch] vm_size, else Standard_D4s_v5].")
@click.option("--price", type=float, help="Hourly price of one node in USD (instead of the table's).")
@click.pass_context
def report(ctx: click.Context, run_id: str, output: Path | None, vm_size: str | None,
           price: float | None) -> None:
    """Write a run's report: one HTML file (timeline, durations, failures) that opens offline."""
    from shardrun.planning.report import write_report

    path = write_report(run_id, output, home=_home(ctx), vm_size=vm_size, price=price)
    out.print(f"wrote {path}")


@cli.command()
@click.argument("job", type=click.Path(path_type=Path))
@click.option("--deadline", **DURATION, help="Recommend the cheapest plan that finishes in time.")
@click.option("--budget", type=float, help="Recommend the fastest plan that costs at most this (USD).")
@click.option("--spot", is_flag=True, help="Judge cost at Spot prices (preemption is not modelled) "
              "[default: the Spot share of the job's [batch] pool, else dedicated].")
@click.option("--vm", "vm_size", help="VM size [default: the job's [batch] vm_size, else Standard_D4s_v5].")
@click.option("--price", type=float, help="Dedicated USD per node-hour (overrides the table).")
@click.option("--spot-price", type=float, help="Spot USD per node-hour (overrides the table).")
@click.option("--prices", "prices_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="TOML price table to add to or replace the built-in one.")
@click.option("--startup", **DURATION,
              help="Node start-up: boot plus image pull [default: calibrated from earlier runs on the "
                   "job's Batch account, else 5m].")
@click.option("--task-overhead", **DURATION,
              help="Per-task cost: scheduling, input download, output upload [default: calibrated from "
                   "earlier runs on the job's Batch account, else 2s].")
@click.option("--unit-time", **DURATION, help="Runtime per unit of work; skips the measurement.")
@click.option("--samples", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Sample pieces to time locally.")
@click.option("--sample-timeout", **DURATION, default="60s", show_default=True,
              help="Longest one sample may run.")
@click.option("--max-nodes", type=click.IntRange(1, 100000),
              help="Most nodes the pool may have (your quota) [default: the job's [batch], else 10].")
@click.option("--slots", type=click.IntRange(1, 256),
              help="Task slots per node [default: the job's [batch], else vCPUs].")
@click.option("--autoscale-interval", **DURATION,
              help="Autoscale evaluation interval (Batch's minimum is 5m); 0: a fixed-size pool "
                   "[default: the job's [batch], else 0].")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="SVG plot to write [default: JOB-NAME.plan.svg here].")
@click.option("--no-plot", is_flag=True, help="Do not write the plot.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plan(ctx: click.Context, job: Path, deadline: float | None, budget: float | None, spot: bool,
         vm_size: str, price: float | None, spot_price: float | None, prices_file: Path | None,
         startup: float | None, task_overhead: float | None, unit_time: float | None, samples: int,
         sample_timeout: float, max_nodes: int | None, slots: int | None,
         autoscale_interval: float | None,
         plot_path: Path | None, no_plot: bool, as_json: bool) -> None:
    """Estimate makespan and cost per shard size and node count, and recommend a plan.

    Exits 1 when no plan meets --deadline / --budget.
    """
    from shardrun.cli.render import plan_table
    from shardrun.core.preflight import check_job
    from shardrun.core.spec import load_spec
    from shardrun.core.workspace import Workspace
    from shardrun.planning import plan as planner
    from shardrun.planning.autosize import AutoChoice, NoSizeFits, choose_for_job
    from shardrun.planning.calibrate import calibrate
    from shardrun.planning.plot import plot_svg
    from shardrun.providers.azure import BATCH
    from shardrun.providers.azure.prices import DEFAULT_VM, choose_vm, spot_share
    from shardrun.providers.azure.settings import batch_settings

    spec = load_spec(job)
    check_job(spec)
    batch = batch_settings(spec)  # the pool the job file asks for, unless the options say otherwise
    share = 1.0 if spot else (spot_share(batch) if batch is not None else 0.0)
    fixed = False
    if batch is not None:
        vm_size = vm_size or batch.vm_size
        slots = slots or batch.task_slots_per_node
        if max_nodes is None:
            fixed = not batch.autoscale
            fixed_size = max(1, batch.dedicated_nodes + batch.spot_nodes)
            max_nodes = batch.max_nodes if batch.autoscale else fixed_size
        if autoscale_interval is None:
            autoscale_interval = batch.autoscale_interval if batch.autoscale else 0.0
    vm = choose_vm(vm_size or DEFAULT_VM, prices_file=prices_file, price=price, spot_price=spot_price)
    work = planner.workload_for(spec, unit_time=unit_time, samples=samples,
                                sample_timeout=sample_timeout)
    with Workspace(_home(ctx)) as ws:
        # the plans are of a Batch pool: calibrated by Batch runs on the job's account
        calibration = calibrate(ws.ledger, spec, work, backend=BATCH)
        auto: AutoChoice | None = None
        try:
            auto = choose_for_job(spec, ws.ledger, work, deadline=deadline, budget=budget)
            auto_line = auto.line()
        except NoSizeFits as err:
            auto_line = f'per_task = "auto" finds no size: {err.why}'
    basis = _overhead_basis(startup, task_overhead, calibration)
    if startup is None:
        startup = 300.0 if calibration.startup is None else calibration.startup
    if task_overhead is None:
        task_overhead = 2.0 if calibration.task_overhead is None else calibration.task_overhead
    pool = planner.Pool(vm=vm, startup=startup, task_overhead=task_overhead, slots=slots or vm.vcpus,
                        max_nodes=max_nodes or 10, autoscale_interval=autoscale_interval or 0.0,
                        spot_share=share, fixed=fixed)
    plans = planner.plan_grid(work, pool)
    rec = planner.recommend(plans, deadline=deadline, budget=budget, pricing=pool.pricing)
    own = planner.job_plan(work, pool)
    if not no_plot:
        plot_path = plot_path or Path(f"{spec.name}.plan.svg")
        plot_path.write_text(plot_svg(plans, rec, title=f"shardrun plan: {spec.name}", pricing=pool.pricing,
                                      deadline=deadline, budget=budget), encoding="utf-8")
    if as_json:
        extra = {"calibration": {**asdict(calibration), "used": basis},
                 "auto": {"per_task": auto.plan.units_per_task, "plan": asdict(auto.plan),
                          "why": auto.why, "line": auto_line} if auto is not None else None}
        click.echo(json.dumps(planner.to_json(work, pool, plans, rec, **extra), indent=2))
    else:
        for line in planner.describe(work, pool, basis):
            out.print(line, markup=False)
        rows = planner.table_rows(plans, rec.plan, own=own)
        out.print(plan_table(rows, rec.plan, work.job_per_task, pool.pricing))
        if own is not None:
            out.print("* = the shard size in the job file", style="dim")
        if rec.plan:
            p = rec.plan
            out.print(f"recommended: {p.tasks:,} tasks of {p.units_per_task:,} {work.unit_name} "
                      f"(per_task = {p.units_per_task}) on {p.nodes} x {vm.size}: "
                      f"{planner.fmt_duration(p.makespan)}, "
                      f"{planner.fmt_money(p.cost)} — {rec.why}", markup=False)
        else:
            out.print(f"no recommendation: {rec.why}", markup=False)
        out.print(f"on the job's own pool, {auto_line}", markup=False)
        if not no_plot:
            out.print(f"plot: {plot_path}")
    ctx.exit(0 if rec.met else 1)


def _overhead_basis(startup: float | None, task_overhead: float | None,
                    calibration: Calibration) -> str:
    """Where the plan's start-up and per-task overhead come from, in words."""
    if startup is not None and task_overhead is not None:
        return "start-up and overhead given"
    given = " (start-up given)" if startup is not None else (
        " (overhead given)" if task_overhead is not None else "")
    return f"{calibration.how}{given}"


@cli.group()
def image() -> None:
    """Build and push the job's container image ([image] in the job file; docs/containers.md)."""


_JOB = click.option("-j", "--job", type=click.Path(path_type=Path), default="job.toml",
                    show_default=True, help="The job file whose [image] section to use.")
_RUNTIME = click.option("--runtime", type=click.Choice(["auto", "podman", "docker"]), default="auto",
                        show_default=True, help="Container CLI; auto: podman if installed, else docker.")


@image.command("build")
@_JOB
@_RUNTIME
@click.option("-q", "--quiet", is_flag=True, help="Hide the build output (its end is shown on failure).")
def image_build(job: Path, runtime: str, quiet: bool) -> None:
    """Build the image from its Dockerfile/Containerfile; tag NAME:VERSION and NAME:latest."""
    from shardrun.core.spec import load_spec
    from shardrun.images.engine import build_image, find_engine

    tags = build_image(load_spec(job), find_engine(runtime), quiet=quiet)
    out.print(f"built {' and '.join(tags)}", markup=False)


@image.command("push")
@click.argument("registry", required=False)
@_JOB
@_RUNTIME
@click.option("--username", help="Registry user [default: [image] username].")
@click.option("--password-secret", help="Name of the secret holding the password, from the job's "
              "[secrets] source [default: [image] password_secret].")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="--no-tls-verify: plain HTTP, for a loopback test registry only.")
def image_push(registry: str | None, job: Path, runtime: str, username: str | None,
               password_secret: str | None, password_stdin: bool, tls_verify: bool | None) -> None:
    """Tag NAME:VERSION and NAME:latest for REGISTRY and push both (login through stdin)."""
    from shardrun.core.spec import load_spec
    from shardrun.images.engine import find_engine, push_from_job

    spec = load_spec(job)
    pushed = push_from_job(spec, find_engine(runtime), registry, username=username,
                           password_secret=password_secret,
                           password=sys.stdin.read() if password_stdin else None,
                           tls_verify=tls_verify)
    out.print(f"pushed {' and '.join(pushed)}", markup=False)
    out.print(f'use it: [app] image = "{pushed[0]}"', markup=False)
