"""Pieces as plans: each piece of the `lines`, `csv` and `json` splitters as segments of the inputs.

A segment is a byte range of one input, `(input index, offset, length)`, or a short literal
(`b"\\n"` after a last line without a newline, `b"["`, `b"]"` and `b","` around json items). The
splitters write each piece by *materializing* its plan, and a Batch node cuts the same ranges from
the same bytes (providers/azure/batch_pieces.py), so a local piece and a piece cut on a node are
byte-identical by construction.

Plans are computed streaming, CHUNK bytes at a time: a 1 GiB input is never read into memory (a
json item, or a csv record, is held only while it is checked).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shardrun.core.errors import SplitError
from shardrun.core.json_scan import json_items

CHUNK = 1 << 20
Range = tuple[int, int, int]  # (input index, offset, length)
Segment = Range | bytes


@dataclass(frozen=True)
class PiecePlan:
    name: str  # piece-000001.txt: the name a local piece gets
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(len(s) if isinstance(s, bytes) else s[2] for s in self.segments)


def piece_name(index: int, suffix: str) -> str:
    return f"piece-{index:06d}{suffix}"


class _Builder:
    """Collects segments into pieces, merging a range that continues the previous one."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.plans: list[PiecePlan] = []
        self.open: list[Segment] = []

    def add(self, segment: Segment) -> None:
        if isinstance(segment, bytes):
            if segment:
                self.open.append(segment)
            return
        if segment[2] <= 0:
            return
        last = self.open[-1] if self.open else None
        if isinstance(last, tuple) and last[0] == segment[0] and last[1] + last[2] == segment[1]:
            self.open[-1] = (last[0], last[1], last[2] + segment[2])
        else:
            self.open.append(segment)

    def close(self) -> None:
        if self.open:
            self.plans.append(PiecePlan(piece_name(len(self.plans) + 1, self.suffix), tuple(self.open)))
            self.open = []


def plan_lines(inputs: Sequence[Path], per_task: int) -> list[PiecePlan]:
    """`per_task` lines per piece, across files in order; a last line without a newline gets one."""
    pieces = _Builder(inputs[0].suffix if inputs else "")
    count = 0
    for index, path in enumerate(inputs):
        start = pos = 0
        last = b"\n"
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                avail, j = block.count(b"\n"), 0
                while avail >= per_task - count:
                    for _ in range(per_task - count):
                        j = block.index(b"\n", j) + 1
                    avail -= per_task - count
                    pieces.add((index, start, pos + j - start))
                    pieces.close()
                    start, count = pos + j, 0
                count += avail
                pos += len(block)
                last = block[-1:]
        pieces.add((index, start, pos - start))
        if last != b"\n":  # a last line without newline must not run into the next file's first
            pieces.add(b"\n")
            count += 1
            if count == per_task:
                pieces.close()
                count = 0
    pieces.close()
    return pieces.plans


def csv_spans(path: Path) -> Iterator[tuple[int, int, bool]]:
    """(offset, length, ends with a newline) of each raw CSV record; a quoted field may span lines
    (quote parity tells where a record ends). Read CHUNK bytes at most at a time."""
    with path.open("rb") as f:
        start = pos = quotes = 0
        while part := f.readline(CHUNK):
            pos += len(part)
            quotes += part.count(b'"')
            if quotes % 2 == 0 and part.endswith(b"\n"):
                yield start, pos - start, True
                start, quotes = pos, 0
        if pos > start:
            if quotes % 2:
                raise SplitError(f"{path}: unterminated quoted field at the end of the file")
            yield start, pos - start, False


def plan_csv(inputs: Sequence[Path], per_task: int) -> list[PiecePlan]:
    """`per_task` rows per piece, each piece starting with the first file's header row."""
    pieces = _Builder(".csv")
    header: list[Segment] | None = None
    header_bytes = b""
    count = 0
    for index, path in enumerate(inputs):
        spans = csv_spans(path)
        first = next(spans, None)
        if first is None:
            continue
        with path.open("rb") as f:
            f.seek(first[0])
            text = f.read(first[1])
        if header is None:
            header = [(index, first[0], first[1])] + ([] if first[2] else [b"\n"])
            header_bytes = text
        elif text.rstrip(b"\r\n") != header_bytes.rstrip(b"\r\n"):
            raise SplitError(f"{path}: header differs from {inputs[0].name}'s")
        for offset, length, ended in spans:
            if not pieces.open:
                for segment in header:
                    pieces.add(segment)
            pieces.add((index, offset, length))
            if not ended:
                pieces.add(b"\n")
            count += 1
            if count == per_task:
                pieces.close()
                count = 0
    pieces.close()
    return pieces.plans


def plan_json(inputs: Sequence[Path], per_task: int) -> list[PiecePlan]:
    """Items of each file's top-level JSON array, `per_task` items per piece: `[`, the source bytes
    of the items (the separators between them as in the source; `,` between files), `]`."""
    pieces = _Builder(".json")
    count = 0
    for index, path in enumerate(inputs):
        run_start: int | None = None  # the first item of the open piece in this file
        run_end = 0
        for start, end in json_items(path, CHUNK):
            if run_start is None:
                pieces.add(b"[" if not pieces.open else b",")
                run_start = start
            run_end = end
            count += 1
            if count == per_task:
                pieces.add((index, run_start, run_end - run_start))
                pieces.add(b"]")
                pieces.close()
                run_start, count = None, 0
        if run_start is not None:
            pieces.add((index, run_start, run_end - run_start))
    if pieces.open:
        pieces.add(b"]")
    pieces.close()
    return pieces.plans


def materialize(plan: PiecePlan, inputs: Sequence[Path], dest: Path,
                handles: dict[int, BinaryIO] | None = None) -> None:
    """Write the piece's bytes to `dest`. `handles`: open inputs kept between calls (the caller
    closes them), since consecutive pieces read the same file."""
    own = handles is None
    opened: dict[int, BinaryIO] = {} if handles is None else handles
    try:
        with dest.open("wb") as out:
            for segment in plan.segments:
                if isinstance(segment, bytes):
                    out.write(segment)
                    continue
                index, offset, length = segment
                f = opened.get(index)
                if f is None:
                    for old in list(opened):  # one input open at a time
                        opened.pop(old).close()
                    f = opened[index] = inputs[index].open("rb")
                f.seek(offset)
                while length > 0:
                    data = f.read(min(CHUNK, length))
                    if not data:
                        raise SplitError(f"{inputs[index]}: changed while it was split")
                    out.write(data)
                    length -= len(data)
    finally:
        if own:
            for f in opened.values():
                f.close()


def materialize_all(plans: Sequence[PiecePlan], inputs: Sequence[Path], outdir: Path) -> list[Path]:
    handles: dict[int, BinaryIO] = {}
    out = []
    try:
        for plan in plans:
            dest = outdir / plan.name
            materialize(plan, inputs, dest, handles)
            out.append(dest)
    finally:
        for f in handles.values():
            f.close()
    return out


def encode_segments(segments: Sequence[Segment]) -> str:
    """The ledger's form: JSON, a range as [index, offset, length], a literal as its text."""
    return json.dumps([s.decode("utf-8") if isinstance(s, bytes) else list(s) for s in segments],
                      separators=(",", ":"))


def decode_segments(text: str) -> tuple[Segment, ...]:
    return tuple(s.encode("utf-8") if isinstance(s, str) else (int(s[0]), int(s[1]), int(s[2]))
                 for s in json.loads(text))
