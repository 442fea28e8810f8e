"""Pieces by reference on Azure Batch: each node gets the run's inputs once, each task cuts its piece.

The client uploads every input file once (`<run>/sources/<n>/<name>`, core/layout.py). The job's
preparation task (once per node, before the job's first task there, waitForSuccess) has them as
resource files, so the Batch agent downloads them into AZ_BATCH_JOB_PREP_WORKING_DIR and the image
needs no tool for it. Each task's script then cuts its piece to INPUT_PATH from its segments
(core/split_plan.py) with `tail -c +N | head -c L` for a byte range and `printf` for a literal,
which busybox and coreutils both have, before the app starts: the task contract does not change.
Container tasks see the same folder (Batch maps the node's root folder into the container, and
passes the task's variables). Values reach the script as positional arguments, never pasted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shardrun.core.compute import PieceMode, SplitFacts, TaskSpec
from shardrun.core.errors import ShardrunError
from shardrun.core.layout import source_index, sources_prefix
from shardrun.core.spec import JobSpec
from shardrun.core.split_plan import Segment, decode_segments
from shardrun.providers.azure.settings import BatchSection

SOURCES_DIR = "shardrun-sources"  # in the job preparation task's working folder, one file per input
PREP_ID = "shardrun-sources"
PREP_RETRIES = 2

# Run by /bin/sh before TASK_SCRIPT, with its own arguments first: the piece's path (relative to
# the working folder), its size, then segments (`r FILE START LENGTH`: bytes START.. (1-based) of
# the source file; `l FORMAT`: a literal as printf octal escapes, so it holds no '%'), then `--`.
# The piece's size is checked, so a source that is short or missing fails the attempt.
CUT_SCRIPT = (
    'src="${AZ_BATCH_JOB_PREP_WORKING_DIR:?the job preparation folder is not set}/' + SOURCES_DIR
    + '"; piece="${AZ_BATCH_TASK_WORKING_DIR:-$PWD}/$1"; want="$2"; shift 2; '
    'mkdir -p "${piece%/*}" && : > "$piece" || exit 1; '
    'while [ "$1" != "--" ]; do case "$1" in '
    'r) tail -c "+$3" "$src/$2" | head -c "$4" >> "$piece"; shift 4;; '
    'l) printf "$2" >> "$piece"; shift 2;; '
    '*) echo "shardrun: bad piece segment: $1" >&2; exit 1;; esac; done; shift; '
    'got=$(wc -c < "$piece"); [ "$got" -eq "$want" ] || { '
    'echo "shardrun: cut $got of the piece'"'"'s $want bytes from $src" >&2; exit 1; }; '
)


# The crossover of [batch] pieces = "auto" (docs/azure.md, "Pieces by reference"). By reference,
# the client saves a request per piece, and every node downloads the whole input once instead of
# its share. PIECE_SECONDS: the client's time per stored piece (bench/pieces.py through a 20 ms
# latency proxy, 16 at once: 8.7 ms on a busy 2-core machine; requests are CPU-bound on the
# client, so a faster one pays less). NODE_BYTES_PER_SECOND: what a node is assumed to download from Blob
# Storage (a conservative figure for a small VM in the same region).
PIECE_SECONDS = 0.005
NODE_BYTES_PER_SECOND = 100e6
PLANNED_KINDS = ("lines", "csv", "json")
# The job preparation task lists one resource file per input, and the service caps that list's
# size (RequestEntityTooLarge): more input files than this always go per piece.
MAX_SOURCES = 1000


def why_not_by_reference(settings: BatchSection, spec: JobSpec) -> str:
    """Why this job's pieces cannot go by reference ('' when they can). The files, command and
    function splitters always go per piece, whatever [batch] pieces says."""
    if settings.storage_mode == "mount":
        return "storage_mode = 'mount' reads pieces from the mount"
    if spec.app.command is None:
        return "no script runs before the image's ENTRYPOINT to cut the piece; set [app] command"
    return ""


def nodes_of(settings: BatchSection) -> int:
    """How many nodes the run may have: each downloads the whole input once."""
    if settings.autoscale or settings.pool_id is not None:
        return settings.max_nodes
    return max(1, settings.dedicated_nodes + settings.spot_nodes)


def choose_mode(settings: BatchSection, spec: JobSpec, facts: SplitFacts) -> PieceMode:
    if spec.split.kind not in PLANNED_KINDS or why_not_by_reference(settings, spec):
        return PieceMode.PER_PIECE
    if facts.files > MAX_SOURCES:
        return PieceMode.PER_PIECE
    if settings.pieces != "auto":
        return PieceMode(settings.pieces)
    nodes = nodes_of(settings)
    extra_node_seconds = facts.input_bytes * (1 - 1 / nodes) / NODE_BYTES_PER_SECOND
    saved_client_seconds = max(0, facts.pieces - facts.files) * PIECE_SECONDS
    if extra_node_seconds <= saved_client_seconds:
        return PieceMode.BY_REFERENCE
    return PieceMode.PER_PIECE


def literal_format(data: bytes) -> str:
    """A literal as a printf format of octal escapes: the same bytes in every printf."""
    return "".join(f"\\{b:03o}" for b in data)


def cut_args(segments: Iterable[Segment], input_path: str) -> tuple[str, ...]:
    """CUT_SCRIPT's arguments for one piece, up to and including the `--`."""
    segments = tuple(segments)
    size = sum(len(s) if isinstance(s, bytes) else s[2] for s in segments)
    args = [input_path, str(size)]
    for segment in segments:
        if isinstance(segment, bytes):
            args += ["l", literal_format(segment)]
        else:
            index, offset, length = segment
            args += ["r", str(index), str(offset + 1), str(length)]
    return (*args, "--")


def task_cut(spec: TaskSpec, input_path: str) -> tuple[str, ...]:
    """The cut of a task whose piece goes by reference; () for a piece of its own."""
    if spec.segments is None:
        return ()
    return cut_args(decode_segments(spec.segments), input_path)


def job_preparation(store: Any, run_id: str, url: Callable[[str], str], identity: str | None,
                    tasks: Iterable[TaskSpec]) -> Any:
    """The job preparation task that brings the run's sources to each node, or None when no task
    goes by reference."""
    if not any(t.segments is not None for t in tasks):
        return None
    from azure.batch import models as bm

    keys = [o.key for o in store.list(sources_prefix(run_id))]
    if not keys:
        raise ShardrunError(f"run {run_id}: its pieces go by reference, but its inputs are not in "
                            f"its container ({sources_prefix(run_id)}); start it afresh")
    ref = bm.BatchNodeIdentityReference(resource_id=identity) if identity else None
    files = [bm.ResourceFile(http_url=url(key), file_path=f"{SOURCES_DIR}/{source_index(key)}",
                             identity_reference=ref) for key in keys]
    return bm.BatchJobPreparationTask(
        id=PREP_ID,
        command_line="/bin/sh -c true",  # the agent's download of the resource files is the work
        resource_files=files,
        wait_for_success=True,
        constraints=bm.BatchTaskConstraints(max_task_retry_count=PREP_RETRIES),
    )


def preparation_failure(statuses: Iterable[Any]) -> str | None:
    """Why no task of the job can start, from its job preparation statuses: the preparation failed
    on every node that ran it (waitForSuccess keeps the job's tasks off those nodes). None while
    some node has it running or done, or none has tried yet."""
    failed, fine = [], 0
    for status in statuses:
        info = status.job_preparation_task_execution_info
        if info is None:
            continue
        if not str(info.state).lower().endswith("completed") or str(info.result).lower().endswith("success"):
            fine += 1
            continue
        why = info.failure_info
        failed.append(f"{status.node_id}: {why.code}: {why.message}" if why is not None
                      else f"{status.node_id}: exit code {info.exit_code}")
    if not failed or fine:
        return None
    return ("the job preparation task that downloads the run's inputs to each node failed on every "
            f"node that ran it ({'; '.join(failed[:3])}), so no task can start")
