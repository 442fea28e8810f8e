"""The run commands: init, validate, split, run, retry, status, logs, merge, cleanup, gc, runs."""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shardrun.cli.app import _home, cli, out

# The library is imported inside each command, so a command loads only what it uses (and
# `shardrun --version` or `--help` loads none of it).
if TYPE_CHECKING:
    from shardrun.core.ledger import Ledger
    from shardrun.core.outcome import RunResult
    from shardrun.core.prepare import ShardSizer
    from shardrun.core.progress import ProgressView
    from shardrun.core.spec import JobSpec

WAIT = click.option("--wait", is_flag=True,
                    help="If another client works on the run, wait for it instead of stopping.")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default="job.toml")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--app", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Scaffold around this program: a wrapper script, a Dockerfile and a container job.")
@click.option("--input", "input_", default="input.txt", show_default=True,
              help="With --app: the job's input (a file, a glob or a folder).")
@click.option("--split", "method", type=click.Choice(["lines", "files", "json", "csv"]),
              default="lines", show_default=True, help="With --app: how to split the input.")
@click.option("--per-task", type=click.IntRange(1), default=100, show_default=True,
              help="With --app: lines, files, items or rows per task.")
@click.option("--args", "app_args", help="With --app: the app's arguments, with {input} {output} "
              "{config} [default: -i {input} -o {output}, plus -c {config} with --config].")
@click.option("--config", help="With --app: a config file every task reads.")
@click.option("--base", default="scratch", show_default=True,
              help="With --app: base image; 'scratch' adds this machine's static busybox.")
@click.option("--base-rootfs", type=click.Path(path_type=Path, exists=True),
              help="With --app: import this root filesystem (a folder or a tarball, e.g. from "
                   "mmdebstrap) as the base image: no registry needed (docs/containers.md).")
def init(path: Path, force: bool, app: Path | None, input_: str, method: str, per_task: int,
         app_args: str | None, config: str | None, base: str, base_rootfs: Path | None) -> None:
    """Write a commented example job file, or with --app a container setup around an app."""
    if app is not None:
        from shardrun.images.scaffold import AppScaffold, scaffold_app

        files = scaffold_app(AppScaffold(app, path, input=input_, args=app_args, config=config,
                                         base=base, method=method, per_task=per_task,
                                         base_rootfs=base_rootfs), force=force)
        out.print(f"wrote {', '.join(f.name for f in files)} in {path.resolve().parent}",
                  markup=False)
        out.print(f"next: shardrun image build -j {path}, then: shardrun run {path}", markup=False)
        return
    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; use --force to overwrite it")
    text = resources.files("shardrun").joinpath("templates/job.toml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    out.print(f"wrote {path}; edit it, then: shardrun validate {path}")


@cli.command()
@click.argument("job", type=click.Path(path_type=Path))
@click.pass_context
def validate(ctx: click.Context, job: Path) -> None:
    """Check a job file and what it names, without running anything."""
    from shardrun.core.preflight import job_warnings, validate_job
    from shardrun.core.workspace import resolve_home
    from shardrun.planning.autosize import many_tasks_warning

    spec, inputs = validate_job(job, home=resolve_home(_home(ctx)))
    for said in job_warnings(spec):
        out.print(said, markup=False)
    out.print(f"{job}: ok ({len(inputs)} input file(s), split by {spec.split.kind}, "
              f"merge by {spec.merge.kind}, backend {spec.run.backend})")
    many = many_tasks_warning(spec)
    if many:
        out.print(many, markup=False)


@cli.command()
@click.argument("job", type=click.Path(path_type=Path))
@click.option("-o", "--outdir", type=click.Path(path_type=Path), required=True,
              help="Empty or new folder for the pieces.")
@click.pass_context
def split(ctx: click.Context, job: Path, outdir: Path) -> None:
    """Split only, so the pieces can be inspected (per_task = "auto": as a new run would)."""
    from shardrun.core.spec import load_spec
    from shardrun.core.split import split_job
    spec = load_spec(job)
    if outdir.exists() and any(outdir.iterdir()):
        raise click.UsageError(f"{outdir} is not empty")
    if spec.split.per_task == "auto":
        from shardrun.core.workspace import Workspace
        from shardrun.planning.autosize import sized

        with Workspace(_home(ctx)) as ws:
            spec, choice = sized(spec, ws.ledger)
        out.print(choice.line(), markup=False)
    outdir.mkdir(parents=True, exist_ok=True)
    pieces = split_job(spec, outdir)
    out.print(f"{len(pieces)} pieces in {outdir}")


@cli.command()
@click.argument("job", type=click.Path(path_type=Path))
@click.option("--new", is_flag=True, help="Start a new run even if an unfinished one exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--deadline", help='per_task = "auto": the cheapest shard size that ends in time ("2h").')
@click.option("--budget", type=float, help='per_task = "auto": the fastest shard size within this (USD).')
@WAIT
@click.pass_context
def run(ctx: click.Context, job: Path, new: bool, quiet: bool, deadline: str | None,
        budget: float | None, wait: bool) -> None:
    """Run a job (or resume its unfinished run).

    A resumed run takes the job file's current [run] timeout, retries, concurrency and
    allow_failures, and its [merge]; an edit of [app] or [split] needs --new."""
    from shardrun.cli.progress import progress_for
    from shardrun.core.pipeline import run_job
    from shardrun.core.spec import load_spec, parse_duration

    try:
        seconds = parse_duration(deadline) if deadline is not None else None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--deadline") from None
    if (deadline or budget) and load_spec(job).split.per_task != "auto":
        raise click.UsageError(f'--deadline and --budget choose [split] per_task = "auto"; '
                               f"{job} sets a number")
    view = progress_for(quiet=quiet)
    try:
        result = run_job(job, home=_home(ctx), new=new, progress=view, wait=wait,
                         size_shards=_planner(seconds, budget))
    finally:
        view.close()  # also when the run stops on an error: the terminal gets its cursor back
    _print_result(result)
    ctx.exit(0 if result.ok else 1)


def _planner(deadline: float | None, budget: float | None) -> ShardSizer:
    """The planner's shard sizer, imported only for a new run that asks for it (per_task = "auto"):
    every other run starts without it."""

    def size(spec: JobSpec, ledger: Ledger, view: ProgressView) -> JobSpec:
        from shardrun.planning.autosize import shard_sizer

        return shard_sizer(deadline=deadline, budget=budget)(spec, ledger, view)

    return size


@cli.command()
@click.argument("run_id")
@click.option("--failed", is_flag=True, help="Rerun every failed task.")
@click.option("--task", "tasks", multiple=True, help="Rerun this task (repeatable).")
@click.option("--quiet", "-q", is_flag=True)
@WAIT
@click.pass_context
def retry(ctx: click.Context, run_id: str, failed: bool, tasks: tuple[str, ...],
          quiet: bool, wait: bool) -> None:
    """Rerun the failed tasks of a run, then merge.

    It takes the job file's current [run] timeout, retries, concurrency and allow_failures, and its
    [merge]; the app and the pieces stay what the run started with."""
    from shardrun.cli.progress import progress_for
    from shardrun.core.pipeline import retry_run
    if not failed and not tasks:
        raise click.UsageError("say which tasks: --failed, or --task ID")
    view = progress_for(quiet=quiet)
    try:
        result = retry_run(run_id, home=_home(ctx), task_ids=list(tasks) or None, progress=view,
                           wait=wait)
    finally:
        view.close()
    _print_result(result)
    ctx.exit(0 if result.ok else 1)


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's state, counts and failures."""
    from shardrun.core.status import run_status
    info = run_status(run_id, home=_home(ctx))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    t = info["tasks"]
    out.print(f"run {info['run_id']} ({info['job']}): {info['status']}")
    out.print(f"  tasks: {t['total']} total, {t['succeeded']} succeeded, {t['failed']} failed, "
              f"{t['running']} running, {t['pending']} waiting; {info['retries']} retries")
    cost = info.get("cost")
    if cost and cost.get("usd") is not None:
        # The ledger knows when tasks ran, not when nodes booted or idled: a lower bound.
        out.print(f"  cost so far: about ${cost['usd']:.2f} or more ({cost['node_hours']:.2f} busy "
                  f"node-hours on {cost['nodes']} x {cost['vm_size']} at ${cost['usd_per_node_hour']}/h, "
                  f"prices as of {cost['prices_as_of']}; node start-up and idle time not counted)",
                  markup=False)
    elif cost:
        out.print(f"  cost so far: unknown ({cost['basis']})", markup=False)
    if info["merged_output"]:
        out.print(f"  merged output: {info['merged_output']}")
    if info["message"]:
        out.print(f"  note: {info['message']}")
    _print_failures(info["run_id"], info["failed"])


@cli.command()
@click.argument("run_id")
@click.argument("task_id")
@click.option("--attempt", type=int, help="Attempt number [default: the last].")
@click.option("--stdout", "stream", flag_value="stdout", help="Show stdout.")
@click.option("--stderr", "stream", flag_value="stderr", default=True, help="Show stderr.")
@click.pass_context
def logs(ctx: click.Context, run_id: str, task_id: str, attempt: int | None, stream: str) -> None:
    """Print a task attempt's stored stderr (or stdout). TASK_ID: the id, or its input's name."""
    from shardrun.core.status import task_label, task_log
    data = task_log(run_id, task_id, attempt=attempt, stream=stream, home=_home(ctx))
    if sys.stderr.isatty():  # a header for the reader; a pipe gets the log's bytes only
        click.echo(f"{task_label(run_id, task_id, home=_home(ctx))} {stream}:", err=True)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@cli.command()
@click.argument("run_id")
@WAIT
@click.pass_context
def merge(ctx: click.Context, run_id: str, wait: bool) -> None:
    """Merge a run's outputs again, with the job file's current [merge] (after a failed merge, or
    after changing the merger)."""
    from shardrun.cli.progress import progress_for
    from shardrun.core.pipeline import merge_run
    merged = merge_run(run_id, home=_home(ctx), wait=wait, progress=progress_for())
    out.print(f"merged result: {merged}")


@cli.command()
@click.argument("run_id")
@click.option("--force", is_flag=True, help="Also clean a run marked running whose client is gone "
              "(a detached Batch run's tasks are stopped).")
@WAIT
@click.pass_context
def cleanup(ctx: click.Context, run_id: str, force: bool, wait: bool) -> None:
    """Delete a run's stored data and scratch folders (the merged output is kept)."""
    from shardrun.core.cleanup import cleanup_run
    removed = cleanup_run(run_id, home=_home(ctx), force=force, wait=wait)
    for item in removed:
        out.print(f"removed {item}")
    if not removed:
        out.print(f"nothing left to remove for {run_id}")


@cli.command()
@click.option("--older-than", "older_than", default="7d", show_default=True,
              help="Only containers created longer ago than this ('7d', '36h').")
@click.option("--delete", is_flag=True, help="Delete what is found (default: only list it).")
@click.option("--job", type=click.Path(path_type=Path),
              help="Take the account from this job file's [storage] and [secrets].")
@click.option("--account-url", help="Blob account URL [default: from the job file or the environment].")
@click.option("--include-interrupted", is_flag=True,
              help="Also delete runs that could be resumed (interrupted, or whose client died).")
@click.pass_context
def gc(ctx: click.Context, older_than: str, delete: bool, job: Path | None,
       account_url: str | None, include_interrupted: bool) -> None:
    """Find what shardrun left in the cloud (Blob containers, and with --job Batch pools and jobs)
    that no live run owns, by its metadata, never by its name."""
    from shardrun.core import provider
    from shardrun.core.spec import load_spec, parse_age
    from shardrun.core.workspace import Workspace

    try:
        age = parse_age(older_than)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--older-than") from None
    spec = load_spec(job) if job is not None else None
    options = {"account_url": account_url} if account_url else {}
    with Workspace(_home(ctx)) as ws:
        request = provider.GcRequest(age, delete, ws.ledger, spec, options, include_interrupted)
        found = [pair for p in provider.installed() for pair in p.collect_leftovers(request)]
    for item, deleted in found:
        verb = "deleted" if deleted else ("already gone" if delete else "would delete")
        out.print(f"{verb} {item.kind} {item.resource_id} (run {item.run_id}, {item.why}, created "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(item.created))})", markup=False)
    if not found:
        out.print(f"nothing of shardrun's older than {older_than} without a live run")
    elif not delete:
        out.print(f"{len(found)} item(s); delete them with: "
                  f"shardrun gc --older-than {older_than} --delete" + (f" --job {job}" if job else ""),
                  markup=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.pass_context
def runs(ctx: click.Context, as_json: bool, limit: int) -> None:
    """List recent runs."""
    from shardrun.core.status import list_runs
    rows = list_runs(home=_home(ctx), limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table()
    # a run id is what the other commands take: never cut or wrapped, whatever the width
    table.add_column("run", no_wrap=True, min_width=max((len(r["run_id"]) for r in rows), default=3))
    for name in ("job", "status", "tasks", "failed", "created"):
        table.add_column(name)
    for r in rows:
        table.add_row(r["run_id"], r["job"], r["status"], str(r["tasks"]), str(r["failed"]),
                      r["created_at"])
    out.print(table)


def _say(text: str) -> None:
    """A plain line on stdout: what a run prints at its end needs no rich (whose import and console
    cost a `shardrun run` about 40 ms of CPU at exit), and a path or a reason is printed as it is,
    never read as markup."""
    click.echo(text)


def _print_result(result: RunResult) -> None:
    c = result.counts
    verb = "resumed run" if result.resumed else "run"
    _say(f"{verb} {result.run_id}: {result.status} — {c['succeeded']} succeeded, "
         f"{c['failed']} failed in {result.wall_time:.1f}s")
    if result.merged_output:
        _say(f"merged result: {result.merged_output}")
    if result.message:
        _say(result.message)
    _print_failures(result.run_id, [f.__dict__ for f in result.failed])
    if result.failed:
        _say(f"rerun only these: shardrun retry {result.run_id} --failed")


def _print_failures(run_id: str, failed: list[dict[str, Any]], limit: int = 20) -> None:
    from shardrun.core.outcome import task_label as outcome_label
    for f in failed[:limit]:
        label = outcome_label(f["task_id"], f.get("input_name") or "")
        _say(f"  {label} failed after {f['attempts']} attempt(s): {f['reason']}")
        if f["stderr_tail"]:
            _say(f"    stderr: {f['stderr_tail']}")
        _say(f"    full log: shardrun logs {run_id} {f['task_id']}")
    if len(failed) > limit:
        _say(f"  ... and {len(failed) - limit} more (shardrun status {run_id} --json)")
