"""Measure a job's work for the planner: split it with its own splitter, time its own app on samples.

The samples run through the local backend, so they see exactly what a real task sees (the task
contract, config and files), one at a time so they do not compete for the CPU. Nothing is recorded
in the ledger and everything is made in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shardrun.core import layout
from shardrun.core.compute import AttemptEvent, RunContext, TaskSpec
from shardrun.core.containers import job_runtime
from shardrun.core.errors import ShardrunError
from shardrun.core.plugins import tail
from shardrun.core.preflight import resolved_command
from shardrun.core.spec import JobSpec
from shardrun.core.split import BUILTIN, csv_records, resolve_inputs, split_job
from shardrun.core.store import Store
from shardrun.planning.workload import Sample, Workload
from shardrun.providers.local.container import container_settings
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.store import LocalStore

UNIT_NAMES = {"lines": "lines", "files": "files", "json": "items", "csv": "rows"}
MEASURE_PIECES = 50  # per_task = "auto": the input is cut into about this many pieces to sample


def _input_lines(path: Path) -> int:
    """Lines as split_lines counts them: a last line without a newline is a line too."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def count_input_units(spec: JobSpec) -> int | None:
    """The units of work in the job's input, as its built-in splitter counts them, read without
    splitting anything (None: a custom splitter, which only running it can tell)."""
    kind = spec.split.kind
    if kind not in UNIT_NAMES:
        return None
    inputs = resolve_inputs(spec)
    if kind == "files":
        return len(inputs)
    if kind == "lines":
        return sum(_input_lines(p) for p in inputs)
    return sum(count_units(kind, p) for p in inputs)


def count_tasks(spec: JobSpec) -> int | None:
    """How many tasks the job file makes, counted without splitting (None: not known before the
    split, for a custom splitter or per_task = "auto")."""
    per_task = spec.split.per_task
    units = count_input_units(spec)
    if units is None or per_task == "auto":
        return None
    return math.ceil(units / per_task)


def count_units(kind: str, piece: Path) -> int:
    """How many units of work a piece holds, as its splitter counts them (a custom splitter: 1)."""
    if kind == "lines":
        with piece.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    if kind == "csv":
        return max(0, sum(1 for _ in csv_records(piece)) - 1)
    if kind == "json":
        data = json.loads(piece.read_text(encoding="utf-8"))
        return len(data) if isinstance(data, list) else 1
    if kind == "files" and piece.is_dir():
        return sum(1 for p in piece.rglob("*") if p.is_file())
    return 1


def _spread(count: int, k: int) -> list[int]:
    """k indices spread evenly over range(count), first and last included."""
    if k >= count:
        return list(range(count))
    if k == 1:
        return [0]
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})


def _other_size_piece(kind: str, pieces: list[Path], units: list[int], folder: Path) -> Path | None:
    """A piece of a different size from the job's, made by the same built-in splitter.

    Two sizes let the planner tell the app's fixed start cost from its time per unit.
    """
    split = BUILTIN.get(kind)
    if split is None or kind == "files":
        return None  # a custom splitter cannot be asked for other sizes; files change shape
    folder.mkdir()
    if units[0] > 1:
        made = split([pieces[0]], folder, 1)  # one unit
    else:
        m = min(len(pieces), 8)
        if m < 2:
            return None
        made = split(pieces[:m], folder, m)  # m units in one piece
    return made[0] if made else None


@dataclass
class _Split:
    pieces: list[Path]
    units: list[int]  # units of work in each piece
    per_task: int | None  # units per task in the job file (None: "auto")
    unit_name: str
    other: tuple[Path, int] | None = None  # a piece of another size, for the fit


def _with_per_task(spec: JobSpec, per_task: int) -> JobSpec:
    return spec.model_copy(update={"split": spec.split.model_copy(update={"per_task": per_task})})


def _measuring_size(spec: JobSpec, root: Path) -> int:
    """per_task = "auto": a size that cuts the input into about MEASURE_PIECES pieces to sample."""
    units = count_input_units(spec)
    if units is None:  # a custom splitter: one unit per piece tells how many there are
        (root / "count").mkdir()
        units = len(split_job(_with_per_task(spec, 1), root / "count"))
    return max(1, math.ceil(units / MEASURE_PIECES))


def _split(spec: JobSpec, root: Path, *, other_size: bool = True) -> _Split:
    """Split with the job's own splitter and count the units in each piece."""
    kind = spec.split.kind
    job_per_task = None if spec.split.per_task == "auto" else spec.split.per_task
    per_task = _measuring_size(spec, root) if job_per_task is None else job_per_task
    spec = _with_per_task(spec, per_task)
    (root / "pieces").mkdir()
    pieces = split_job(spec, root / "pieces")
    if kind in UNIT_NAMES:
        units = [count_units(kind, p) for p in pieces]
        other = _other_size_piece(kind, pieces, units, root / "other") if other_size else None
        return _Split(pieces, units, job_per_task, UNIT_NAMES[kind],
                      (other, count_units(kind, other)) if other else None)
    # A custom splitter gets {per_task}: splitting again with 1 tells how many units there are.
    if per_task > 1:
        (root / "ones").mkdir()
        ones = split_job(_with_per_task(spec, 1), root / "ones")
        if len(ones) > len(pieces):
            units = [per_task] * (len(pieces) - 1) + [max(1, len(ones) - (len(pieces) - 1) * per_task)]
            return _Split(pieces, units, job_per_task, "units", (ones[0], 1) if other_size else None)
    # it ignores per_task: a piece is a unit
    return _Split(pieces, [1] * len(pieces), None if job_per_task is None else 1, "pieces")


def measure_workload(spec: JobSpec, samples: int = 3, timeout: float = 60.0) -> Workload:
    """Split the job and time its app on `samples` pieces (plus one of another size if possible)."""
    with tempfile.TemporaryDirectory(prefix="shardrun-plan-") as tmp:
        root = Path(tmp)
        split = _split(spec, root)
        picks = _spread(len(split.pieces), max(1, samples))
        chosen = [(split.pieces[i], split.units[i]) for i in picks]
        if split.other is not None:
            chosen.append(split.other)
        timed = _run_samples(spec, chosen, root, timeout)
        unit_seconds, start = fit(timed)
        return Workload(
            units=sum(split.units), unit_seconds=unit_seconds, app_start_seconds=start,
            job_per_task=split.per_task, unit_name=split.unit_name,
            how=f"measured on {len(timed)} sample pieces", samples=tuple(timed),
        )


def count_work(spec: JobSpec) -> tuple[int, int | None, str]:
    """(units, units per task in the job file (None: "auto"), unit name), without running the app."""
    with tempfile.TemporaryDirectory(prefix="shardrun-plan-") as tmp:
        split = _split(spec, Path(tmp), other_size=False)
        return sum(split.units), split.per_task, split.unit_name


def fit(samples: list[Sample]) -> tuple[float, float]:
    """Least-squares seconds = start + units * per_unit; (per_unit, start), both at least 0."""
    n = len(samples)
    if n == 0:
        raise ShardrunError("no samples to measure")
    mu = sum(s.units for s in samples) / n
    mt = sum(s.seconds for s in samples) / n
    var = sum((s.units - mu) ** 2 for s in samples)
    total_units = sum(s.units for s in samples) or 1
    if var == 0:
        return sum(s.seconds for s in samples) / total_units, 0.0
    slope = sum((s.units - mu) * (s.seconds - mt) for s in samples) / var
    start = mt - slope * mu
    if slope <= 0:
        return 0.0, mt  # the time does not grow with the work: all of it is start-up
    if start < 0:
        return sum(s.seconds for s in samples) / total_units, 0.0
    return slope, start


def _run_samples(spec: JobSpec, chosen: list[tuple[Path, int]], root: Path, timeout: float) -> list[Sample]:
    run_id = layout.new_run_id("plan")
    store = LocalStore(root / "store")
    tasks = _upload(spec, store, run_id, [p for p, _ in chosen])
    ctx = RunContext(
        run_id=run_id, command=resolved_command(spec), store=store, scratch=root / "scratch",
        env=dict(spec.app.env),
        config_key=layout.config_key(run_id, spec.app.config.name) if spec.app.config else None,
        file_keys=tuple(layout.file_key(run_id, f.name) for f in spec.app.files),
        retries=0, timeout=timeout, concurrency=1, stdout_output=spec.app.stdout == "output",
    )
    # a container job's samples run in its container, as its tasks will
    backend = LocalBackend(runtime=job_runtime(spec), kill_grace=2.0,
                           containers=container_settings(spec))
    started: dict[str, float] = {}
    done: dict[str, AttemptEvent] = {}
    deadline = time.monotonic() + len(tasks) * (timeout + 5) + 10
    try:
        backend.start(ctx)
        backend.submit(tasks)
        while len(done) < len(tasks) and time.monotonic() < deadline:
            for e in backend.events(0.1):
                if e.kind == "started":
                    started[e.task_id] = e.time
                elif e.final:
                    done[e.task_id] = e
    finally:
        backend.stop()
        backend.close()
    out = []
    for task, (_, units) in zip(tasks, chosen, strict=True):
        end = done.get(task.task_id)
        if end is None:
            raise ShardrunError(f"sample {task.task_id} did not finish in time")
        if end.result != "succeeded":
            try:
                stderr = tail(store.get_bytes(layout.log_key(run_id, task.task_id, 1, "stderr")), 3)
            except FileNotFoundError:
                stderr = "(no stderr)"
            raise ShardrunError(f"the app failed on sample piece {task.task_id} ({end.reason}): {stderr}")
        out.append(Sample(task.task_id, units, end.time - started.get(task.task_id, end.time)))
    return out


def _upload(spec: JobSpec, store: Store, run_id: str, pieces: list[Path]) -> list[TaskSpec]:
    """Put the sample pieces, config and files where the local backend looks for them."""
    tasks = []
    uploads: list[tuple[str, Path]] = []
    for i, piece in enumerate(pieces, 1):
        task = layout.task_id(i, len(pieces))
        out_name = (spec.app.output_name_for(piece.name)
                    or f"output{piece.suffix if piece.is_file() else ''}")
        if piece.is_dir():
            key = layout.input_key(run_id, task, piece.name) + "/"
            uploads += [(key + f.relative_to(piece).as_posix(), f)
                        for f in sorted(piece.rglob("*")) if f.is_file()]
        else:
            key = layout.input_key(run_id, task, piece.name)
            uploads.append((key, piece))
        tasks.append(TaskSpec(task, key, layout.output_key(run_id, task, out_name)))
    if spec.app.config:
        uploads.append((layout.config_key(run_id, spec.app.config.name), spec.path(spec.app.config)))
    uploads += [(layout.file_key(run_id, f.name), spec.path(f)) for f in spec.app.files]
    store.put_files(uploads, move=False)
    return tasks
