"""Making a run: split the input, put the pieces in the store, record the run and its tasks.

A run that never got its tasks (the split failed, or its client died while splitting) is abandoned:
it ends failed, and what it stored and its scratch folder are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG

from shardrun.core import layout
from shardrun.core.compute import PassesPieces, PieceMode, SplitFacts
from shardrun.core.errors import JobFileError, SplitError
from shardrun.core.ledger import Ledger, RunRow, TaskTuple
from shardrun.core.progress import NullProgress, ProgressView
from shardrun.core.run import Run, open_run
from shardrun.core.spec import JobSpec
from shardrun.core.split import PLANNERS, plan_job, resolve_inputs, split_job
from shardrun.core.split_plan import PiecePlan, encode_segments, materialize_all
from shardrun.core.states import RunState
from shardrun.core.store import ReportsTransfers, Store
from shardrun.core.workspace import Workspace

BIG_INPUT = 64 * 2**20  # bytes: a split of more than this says what it is doing
MANY_TASKS = 10_000  # a run of more tasks says so: each task costs scheduling and a round trip

# Chooses [split] per_task = "auto" for a new run: the spec with a number in its place. The planner
# provides it (shardrun.planning.autosize); core only calls it, so core never imports planning.
ShardSizer = Callable[[JobSpec, Ledger, ProgressView], JobSpec]


def prepare_run(ws: Workspace, spec: JobSpec, job_key: str, run_id: str,
                view: ProgressView | None = None, *, fingerprint: str | None = None) -> Run:
    """Split the input, put the pieces in storage, and record the run and its tasks.

    `fingerprint`: the job file's as written, when `spec` completes it (per_task = "auto" chosen),
    so that the job file as written still resumes the run.
    """
    view = view or NullProgress()
    ledger = ws.ledger
    row = RunRow(run_id, spec.name, job_key, fingerprint or spec.fingerprint(),
                 json.dumps(spec.model_dump(mode="json")), spec.run.backend, spec.run.storage,
                 RunState.SPLITTING, time.time(), None, None, None)
    ledger.create_run(row, [])
    ledger.add_resource(run_id, "namespace", run_id)
    run = Run(ws, row, spec)
    store = run.store
    if isinstance(store, ReportsTransfers):  # the pieces' upload can be long: show its bytes
        store.report_transfers(view)
    staging = ws.scratch(run_id) / "pieces"
    staging.mkdir(parents=True)
    sources: list[tuple[int, str, int, int]] = []  # the inputs stored whole, as they were
    try:
        began = time.monotonic()
        inputs = resolve_inputs(spec)
        as_planned = file_states(inputs) if spec.split.kind in PLANNERS else []  # before any plan
        size = sum(st.st_size for st in map(os.stat, inputs) if S_ISREG(st.st_mode))
        if size > BIG_INPUT:  # only then is the wait worth a word (and a bad input stays one line)
            view.message(f"splitting {size / 2**20:,.0f} MiB of {spec.split.input} for run {run_id}")
        plans = split_or_plan(run, spec, inputs, staging)
        pieces = [Path(p.name) for p in plans] if isinstance(plans, list) else plans.pieces
        view.message(f"{len(pieces)} pieces from {spec.split.input} in {time.monotonic() - began:.1f}s")
        if len(pieces) > MANY_TASKS:
            view.message(f"run {run_id} has {len(pieces):,} tasks (more than {MANY_TASKS:,}): each one "
                         f"costs scheduling and transfers; a larger [split] per_task, or \"auto\", "
                         "makes fewer")
        tasks: list[TaskTuple] = []
        uploads: list[tuple[str, Path]] = []
        out_names = output_names(spec, pieces, planned=isinstance(plans, list))
        for index, piece in enumerate(pieces, 1):
            task_id = layout.task_id(index, len(pieces))
            out_key = layout.output_key(run_id, task_id, out_names[index - 1])
            if isinstance(plans, list):  # nothing stored under its key: the task cuts its bytes
                plan = plans[index - 1]
                tasks.append((task_id, index, layout.input_key(run_id, task_id, plan.name), plan.size,
                              out_key, encode_segments(plan.segments)))
                continue
            info = os.stat(piece)  # one stat per piece: there may be many thousands
            if S_ISDIR(info.st_mode):
                in_key = layout.input_key(run_id, task_id, piece.name) + "/"
                files = sorted(p for p in piece.rglob("*") if p.is_file())
                uploads += [(in_key + f.relative_to(piece).as_posix(), f) for f in files]
                size = sum(f.stat().st_size for f in files)
            else:
                in_key = layout.input_key(run_id, task_id, piece.name)
                uploads.append((in_key, piece))
                size = info.st_size
            tasks.append((task_id, index, in_key, size, out_key))
        if isinstance(plans, list):
            put_sources(store, run_id, inputs, as_planned)
            sources = [(n, str(path.absolute()), size, mtime)
                       for n, (path, (size, mtime)) in enumerate(zip(inputs, as_planned, strict=True))]
        store.put_files(uploads, move=True)  # the pieces are ours: move, don't copy
        shared = [(layout.file_key(run_id, f.name), spec.path(f)) for f in spec.app.files]
        if spec.app.config:
            shared.append((layout.config_key(run_id, spec.app.config.name), spec.path(spec.app.config)))
        store.put_files(shared, move=False)  # the user's files: copy
    except KeyboardInterrupt:
        abandon(ws, run.row, "stopped while splitting; `shardrun run` starts it afresh")
        raise
    except BaseException as err:
        abandon(ws, run.row, f"split failed: {err}")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with ledger.transaction():
        ledger.add_tasks(run_id, tasks)
        ledger.add_sources(run_id, sources)
        ledger.set_run_status(run_id, RunState.RUNNING)
    run.refresh()
    run.beat()  # its container exists now: other machines see it running
    return run


@dataclass(frozen=True)
class OwnPieces:
    pieces: list[Path]  # every piece its own file (or folder), written in the staging folder


def split_or_plan(run: Run, spec: JobSpec, inputs: list[Path], staging: Path) -> list[PiecePlan] | OwnPieces:
    """The pieces as plans when they go by reference: the run's compute provider says so
    (PassesPieces) for a splitter that cuts byte ranges. Otherwise the pieces, split here."""
    provider = run.compute_provider
    if spec.split.kind not in PLANNERS or not isinstance(provider, PassesPieces):
        return OwnPieces(split_job(spec, staging, inputs))
    plans = plan_job(spec, inputs)
    facts = SplitFacts(spec.split.kind, sum(p.stat().st_size for p in inputs), len(plans), len(inputs))
    if provider.piece_mode(spec, facts) is PieceMode.BY_REFERENCE:
        return plans
    return OwnPieces(materialize_all(plans, inputs, staging))


def file_states(inputs: list[Path]) -> list[tuple[int, int]]:
    """(size, modification time) of each input, to tell whether it changed since."""
    return [(st.st_size, st.st_mtime_ns) for st in (p.stat() for p in inputs)]


def put_sources(store: Store, run_id: str, inputs: list[Path], as_planned: list[tuple[int, int]]) -> None:
    """Store each input once (a copy: they are the user's files), in large parallel blocks.
    `as_planned`: the inputs' file_states when the pieces were planned. An input that changed since
    would give tasks the wrong bytes (the plan's offsets are of the old ones): that stops the run."""
    store.put_files([(layout.source_key(run_id, n, p.name), p) for n, p in enumerate(inputs)],
                    move=False)
    for path, was, now in zip(inputs, as_planned, file_states(inputs), strict=True):
        if now != was:
            raise SplitError(f"{path}: changed while it was split and stored; run again")


def restore_sources(run: Run, view: ProgressView) -> None:
    """Store again the inputs of a run whose pieces go by reference if their stored copies are gone
    (a storage account that lost recent writes): the user's files, if unchanged since the split
    (size and modification time, as the ledger has them), since the pieces are offsets into them.
    A changed one stops the run with one line saying how to start afresh."""
    rows = run.ledger.sources(run.run_id)
    if not rows:
        return
    stored = {o.key: o.size for o in run.store.list(layout.sources_prefix(run.run_id))}
    keyed = [(layout.source_key(run.run_id, n, Path(path).name), Path(path), (size, mtime))
             for n, path, size, mtime in rows]
    lost = [(key, path, was) for key, path, was in keyed if stored.get(key) != was[0]]
    if not lost:
        return
    for _, path, was in lost:
        if not path.is_file() or file_states([path])[0] != was:
            raise SplitError(f"{path}: run {run.run_id}'s stored copy of this input is gone from "
                             "storage, and the file is not as the run split it; start afresh with: "
                             f"shardrun run --new {run.row.job_path}")
    view.message(f"run {run.run_id}: {len(lost)} stored input(s) gone from storage; storing them "
                 "again from the unchanged files")
    run.store.put_files([(key, path) for key, path, _ in lost], move=False)
    for _, path, was in lost:
        if file_states([path])[0] != was:
            raise SplitError(f"{path}: changed while it was stored again; start afresh with: "
                             f"shardrun run --new {run.row.job_path}")


def output_names(spec: JobSpec, pieces: list[Path], *, planned: bool = False) -> list[str]:
    """Each piece's output name. Raise JobFileError for a name [app] output_name cannot make, and,
    with [merge] method = "folder", for two pieces whose outputs would get one name. `planned`:
    the pieces are names of planned files (by reference), not files here."""
    names = []
    seen: dict[str, str] = {}
    for piece in pieces:
        try:
            name = spec.app.output_name_for(piece.name)
        except ValueError as err:
            raise JobFileError(f"{spec.source}: [app] output_name {spec.app.output_name!r} for the "
                               f"input {piece.name!r}: {err}") from None
        name = name or f"output{piece.suffix if planned or piece.is_file() else ''}"
        if spec.merge.kind == "folder":
            if name in seen:
                raise JobFileError(
                    f"{spec.source}: [merge] method = 'folder': the inputs {seen[name]!r} and "
                    f"{piece.name!r} both make the output {name!r}; set [app] output_name to a "
                    "name that differs per input, e.g. '{stem}.out'")
            seen[name] = piece.name
        names.append(name)
    return names


def abandon(ws: Workspace, row: RunRow, message: str) -> None:
    """A run that never got its tasks: mark it failed and remove what it stored."""
    ws.ledger.set_run_status(row.run_id, RunState.FAILED, message[:500])
    with contextlib.suppress(Exception):
        ws.store(row.storage, open_run(ws, row.run_id).spec).delete_namespace(row.run_id)
        ws.ledger.resource_deleted(row.run_id, "namespace", row.run_id)
    shutil.rmtree(ws.scratch(row.run_id), ignore_errors=True)
