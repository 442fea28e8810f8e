"""Pieces as plans (core/split_plan.py): materializing a plan gives today's local pieces, and the
shell cut a Batch task runs (providers/azure/batch_pieces.py) gives the same bytes as Python."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardrun.core import split_plan
from shardrun.core.compute import PieceMode, SplitFacts
from shardrun.core.errors import SplitError
from shardrun.core.ledger import Ledger
from shardrun.core.spec import JobSpec, load_spec
from shardrun.core.split import split_csv, split_json, split_lines
from shardrun.core.split_plan import (
    PiecePlan,
    decode_segments,
    encode_segments,
    materialize_all,
    plan_csv,
    plan_json,
    plan_lines,
)
from shardrun.providers.azure.batch_pieces import CUT_SCRIPT, SOURCES_DIR, choose_mode, cut_args
from shardrun.providers.azure.settings import BatchSection

from .helpers import write_job


# -- the splitters as they were before plans (the reference the plans must match) ---------------
def old_lines(inputs: list[Path], per_task: int) -> list[bytes]:
    pieces: list[bytes] = []
    cur: bytes | None = None
    count = 0
    for path in inputs:
        data = path.read_bytes()
        lines = re.findall(rb"[^\n]*\n|[^\n]+$", data)
        if lines and not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        for line in lines:
            cur = (cur or b"") + line
            count += 1
            if count == per_task:
                pieces.append(cur)
                cur, count = None, 0
    if cur is not None:
        pieces.append(cur)
    return pieces


def old_csv_records(path: Path) -> Iterator[bytes]:
    record, quotes = b"", 0
    with path.open("rb") as f:
        for line in f:
            record += line
            quotes += line.count(b'"')
            if quotes % 2 == 0:
                yield record if record.endswith(b"\n") else record + b"\n"
                record, quotes = b"", 0


def old_csv(inputs: list[Path], per_task: int) -> list[bytes]:
    header: bytes | None = None
    pieces: list[bytes] = []
    cur: bytes | None = None
    count = 0
    for path in inputs:
        records = old_csv_records(path)
        first = next(records, None)
        if first is None:
            continue
        header = header or first
        for record in records:
            cur = (cur if cur is not None else header) + record
            count += 1
            if count == per_task:
                pieces.append(cur)
                cur, count = None, 0
    if cur is not None:
        pieces.append(cur)
    return pieces


# -- random inputs ---------------------------------------------------------------------------------
def random_lines(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.randint(0, 12)):
        body = bytes(rng.choice(b"ab \t\rxyz") for _ in range(rng.choice([0, 1, 3, 9, 40])))
        out.append(body + rng.choice([b"\n", b"\r\n"]))
    data = b"".join(out)
    return data[:-1] if data and rng.random() < 0.4 else data  # a last line without newline


def random_csv(rng: random.Random, header: bytes) -> bytes:
    rows = [header]
    for i in range(rng.randint(0, 9)):
        field = rng.choice([b"plain", b'"multi\nline"', b'"quote ""x"" , y"', b'"a\r\nb"', b""])
        rows.append(b"%d,%s" % (i, field) + rng.choice([b"\n", b"\r\n"]))
    data = b"".join(rows)
    return data.rstrip(b"\r\n") if rng.random() < 0.3 else data


def random_json_value(rng: random.Random, depth: int = 0) -> str:
    kind = rng.choice(["num", "str", "lit", "list", "obj"] if depth < 3 else ["num", "str", "lit"])
    if kind == "num":
        return rng.choice(["0", "-12", "3.5e+2", "1E-3", "42"])
    if kind == "str":
        return rng.choice(['"plain"', r'"esc \" quote ] [ , { }"', r'"back\\slash\\"', '"ünï ✓"',
                           r'"\u00e9\n\t"', '""'])
    if kind == "lit":
        return rng.choice(["true", "false", "null"])
    ws = rng.choice(["", " ", "\n  ", "\t"])
    items = [random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "list":
        return "[" + ws + ("," + ws).join(items) + ws + "]"
    return "{" + ws + ("," + ws).join(f'"k{i}"{ws}:{ws}{v}' for i, v in enumerate(items)) + ws + "}"


def random_json(rng: random.Random) -> bytes:
    ws = rng.choice(["", " ", "\n", "\r\n  "])
    items = [random_json_value(rng) for _ in range(rng.randint(0, 9))]
    return (ws + "[" + ws + ("," + ws).join(items) + ws + "]" + ws).encode()


def write_inputs(folder: Path, datas: list[bytes], suffix: str) -> list[Path]:
    paths = []
    for i, data in enumerate(datas):
        path = folder / f"in{i}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def pieces_of(plans: list[PiecePlan], inputs: list[Path], folder: Path) -> list[bytes]:
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return [p.read_bytes() for p in materialize_all(plans, inputs, out)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines, records and json items longer than the read chunk cross chunk boundaries."""
    monkeypatch.setattr(split_plan, "CHUNK", 7)


@pytest.mark.parametrize("seed", range(40))
def test_lines_plans_give_todays_pieces(tmp_path: Path, seed: int, small_chunks: None) -> None:
    rng = random.Random(seed)
    inputs = write_inputs(tmp_path, [random_lines(rng) for _ in range(rng.randint(1, 4))], ".txt")
    per_task = rng.choice([1, 2, 3, 7])
    assert pieces_of(plan_lines(inputs, per_task), inputs, tmp_path) == old_lines(inputs, per_task)


@pytest.mark.parametrize("seed", range(40))
def test_csv_plans_give_todays_pieces(tmp_path: Path, seed: int, small_chunks: None) -> None:
    rng = random.Random(seed)
    header = rng.choice([b"id,text\n", b"id,text\r\n"])
    inputs = write_inputs(tmp_path, [random_csv(rng, header) for _ in range(rng.randint(1, 3))], ".csv")
    per_task = rng.choice([1, 2, 4])
    assert pieces_of(plan_csv(inputs, per_task), inputs, tmp_path) == old_csv(inputs, per_task)


@pytest.mark.parametrize("seed", range(40))
def test_json_plans_keep_the_source_bytes_of_the_items(tmp_path: Path, seed: int,
                                                       small_chunks: None) -> None:
    rng = random.Random(seed)
    datas = [random_json(rng) for _ in range(rng.randint(1, 3))]
    inputs = write_inputs(tmp_path, datas, ".json")
    per_task = rng.choice([1, 2, 5])
    items = [item for data in datas for item in json.loads(data)]
    pieces = pieces_of(plan_json(inputs, per_task), inputs, tmp_path)
    assert [json.loads(p) for p in pieces] == [items[i:i + per_task]
                                               for i in range(0, len(items), per_task)]
    if len(datas) == 1 and per_task >= len(items) > 0:  # one piece: the source's items, verbatim
        assert pieces == [b"[" + datas[0].strip()[1:-1].strip() + b"]"]


def test_json_piece_is_the_items_as_written_with_their_separators(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    src.write_bytes(b' [ {"a" : "x]\\"[,"},\n  [1, [2]] ,  "s" ,null]\n')
    (tmp_path / "b.json").write_bytes(b'[7 ,8]')
    pieces = pieces_of(plan_json([src, tmp_path / "b.json"], 2), [src, tmp_path / "b.json"], tmp_path)
    assert pieces == [b'[{"a" : "x]\\"[,"},\n  [1, [2]]]', b'["s" ,null]', b"[7 ,8]"]


@pytest.mark.parametrize(("text", "line"), [
    (b'[1,\n2,\n{"a": tru}]', 3), (b'[1,\n2\n3]', 3), (b'[1, 2', 1), (b'[1,]', 1),
    (b'[1] x', 1), (b'[\n"unterminated]', 2),
])
def test_invalid_json_is_one_line_naming_the_file_and_line(tmp_path: Path, text: bytes, line: int) -> None:
    src = tmp_path / "bad.json"
    src.write_bytes(text)
    with pytest.raises(SplitError) as err:
        split_json([src], tmp_path, 1)
    message = str(err.value)
    assert "\n" not in message and str(src) in message and f"line {line}" in message, message


def test_json_split_is_streaming(tmp_path: Path, small_chunks: None) -> None:
    """Items much larger than the chunk still come out whole (the scanner never needs the file)."""
    items = [{"k": "x" * 50, "n": [i, {"deep": "]]}}"}]} for i in range(20)]
    src = tmp_path / "a.json"
    src.write_text(json.dumps(items, indent=1))
    out = tmp_path / "out"
    out.mkdir()
    assert [json.loads(p.read_bytes()) for p in split_json([src], out, 6)] == [
        items[i:i + 6] for i in range(0, 20, 6)]


def test_splitters_write_what_their_plans_say(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"1\n2\r\n3")
    out = tmp_path / "out"
    out.mkdir()
    assert [p.read_bytes() for p in split_lines([src], out, 2)] == [b"1\n2\r\n", b"3\n"]
    csv = tmp_path / "t.csv"
    csv.write_bytes(b'h\n"a\nb"\nc')
    out2 = tmp_path / "out2"
    out2.mkdir()
    assert [p.read_bytes() for p in split_csv([csv], out2, 1)] == [b'h\n"a\nb"\n', b"h\nc\n"]


def test_segments_round_trip_through_the_ledger_form() -> None:
    segments = ((0, 5, 10), b"\n", (2, 0, 3), b"[", b",", b"]")
    assert decode_segments(encode_segments(segments)) == segments


# -- the shell cut on a node -----------------------------------------------------------------------
SHELLS = [["/bin/sh"]] + ([[b, "sh"]] if (b := shutil.which("busybox")) else [])


def shell_cut(shell: list[str], plan: PiecePlan, inputs: list[Path], node: Path) -> bytes:
    prep = node / "prep"
    wd = node / "wd"
    shutil.rmtree(node, ignore_errors=True)
    (prep / SOURCES_DIR).mkdir(parents=True)
    wd.mkdir()
    for n, path in enumerate(inputs):
        shutil.copyfile(path, prep / SOURCES_DIR / str(n))
    env = {"PATH": os.environ["PATH"], "AZ_BATCH_JOB_PREP_WORKING_DIR": str(prep),
           "AZ_BATCH_TASK_WORKING_DIR": str(wd)}
    argv = [*shell, "-c", CUT_SCRIPT + 'cat "$AZ_BATCH_TASK_WORKING_DIR/in/$1"', "shardrun",
            *cut_args(plan.segments, f"in/{plan.name}"), plan.name]
    proc = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_the_shell_cut_gives_the_bytes_python_materializes(tmp_path: Path, shell: list[str]) -> None:
    rng = random.Random(7)
    cases = [
        (plan_lines, [random_lines(rng) + b"\xff\x00%s%%\\n" for _ in range(3)], 2, ".txt"),
        (plan_csv, [random_csv(rng, b"id,text\r\n") for _ in range(2)], 2, ".csv"),
        (plan_json, [b'[1, "a]\\"", {"x": [2]}]', b'\n[ true ,null,\n 3 ]\n', b"[]",
                     '["\u00fc"]'.encode(), random_json(rng)], 2, ".json"),
    ]
    for planner, datas, per_task, suffix in cases:
        inputs = write_inputs(tmp_path, datas, suffix)
        plans = planner(inputs, per_task)
        expected = pieces_of(plans, inputs, tmp_path)
        got = [shell_cut(shell, plan, inputs, tmp_path / "node") for plan in plans]
        assert got == expected and len(got) > 1


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_a_short_source_fails_the_cut(tmp_path: Path, shell: list[str]) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"0123456789\n")
    plan = PiecePlan("piece-000001.txt", ((0, 2, 20),))  # more than the source holds
    with pytest.raises(AssertionError, match="cut 9 of the piece's 20 bytes"):
        shell_cut(shell, plan, [src], tmp_path / "node")


# -- auto: the crossover -----------------------------------------------------------------------------
def batch_spec(tmp_path: Path, kind: str = "lines", **batch: object) -> JobSpec:
    (tmp_path / "in.txt").write_text("x\n")
    job = write_job(tmp_path, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "in.txt", "method": kind, "per_task": 1},
        "merge": {"method": "concat", "output": "r.txt"},
        "run": {"backend": "azure-batch", "storage": "blob"},
        "batch": {"account_url": "http://127.0.0.1:1", "dedicated_nodes": 4, **batch},
    })
    return load_spec(job)


def test_auto_picks_by_reference_for_many_small_pieces_and_per_piece_for_few_large(tmp_path: Path) -> None:
    spec = batch_spec(tmp_path)
    settings = BatchSection(account_url="http://127.0.0.1:1", dedicated_nodes=4)
    mode = choose_mode(settings, spec, SplitFacts("lines", 20 * 2**20, 5000))
    assert mode is PieceMode.BY_REFERENCE
    mode = choose_mode(settings, spec, SplitFacts("lines", 50 * 2**30, 100))
    assert mode is PieceMode.PER_PIECE
    one = BatchSection(account_url="http://127.0.0.1:1", dedicated_nodes=1)  # nothing downloaded twice
    mode = choose_mode(one, spec, SplitFacts("lines", 50 * 2**30, 100))
    assert mode is PieceMode.BY_REFERENCE
    forced = BatchSection(account_url="http://127.0.0.1:1", dedicated_nodes=4, pieces="per-piece")
    mode = choose_mode(forced, spec, SplitFacts("lines", 20 * 2**20, 5000))
    assert mode is PieceMode.PER_PIECE


def test_files_splitter_always_goes_per_piece(tmp_path: Path) -> None:
    spec = batch_spec(tmp_path, "files", pieces="by-reference")
    settings = BatchSection(account_url="http://127.0.0.1:1", dedicated_nodes=4, pieces="by-reference")
    assert choose_mode(settings, spec, SplitFacts("files", 10, 5000)) is PieceMode.PER_PIECE


def test_an_older_ledger_gets_the_segments_column(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE tasks (run_id TEXT NOT NULL, task_id TEXT NOT NULL, idx INTEGER NOT NULL,"
               " input_key TEXT NOT NULL, input_size INTEGER NOT NULL, output_key TEXT NOT NULL,"
               " output_size INTEGER, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
               " PRIMARY KEY (run_id, task_id))")
    db.execute("INSERT INTO tasks VALUES ('r','t1',1,'r/inputs/t1/a',3,'r/outputs/t1/a',NULL,"
               "'pending',0)")
    db.commit()
    db.close()
    ledger = Ledger(path)
    ledger.add_tasks("r", [("t2", 2, "r/inputs/t2/b", 4, "r/outputs/t2/b", '[[0,0,4]]')])
    rows = ledger.tasks("r")
    assert [(t.task_id, t.segments) for t in rows] == [("t1", None), ("t2", "[[0,0,4]]")]


def test_by_reference_that_cannot_work_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from shardrun.core.errors import JobFileError
    from shardrun.providers.azure import PROVIDER

    spec = batch_spec(tmp_path, pieces="by-reference", storage_mode="mount")
    with pytest.raises(JobFileError, match=r"\[batch\] pieces = 'by-reference': storage_mode"):
        PROVIDER.check_job(spec, fetch_image=False)
    PROVIDER.check_job(batch_spec(tmp_path, pieces="by-reference"), fetch_image=False)


def test_json_split_of_a_large_file_needs_little_memory(tmp_path: Path) -> None:
    """48 MiB of items: the scanner holds one item at a time, never the file."""
    big = tmp_path / "big.json"
    item = json.dumps({"text": "x" * 4000, "n": [1, {"a": "]"}]})
    with big.open("w") as f:
        f.write("[\n" + ",\n".join([item] * 12_000) + "\n]\n")
    out = tmp_path / "out"
    out.mkdir()
    code = ("import re, sys; from pathlib import Path; from shardrun.core.split import split_json\n"
            "def hwm(): return int(re.search(r'VmHWM:\\s*(\\d+) kB', "
            "open('/proc/self/status').read()).group(1)) // 1024\n"
            "before = hwm()\n"
            "pieces = split_json([Path(sys.argv[1])], Path(sys.argv[2]), 5000)\n"
            "print(len(pieces), hwm() - before)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(big), str(out)], capture_output=True,
                          text=True, check=True, timeout=300)
    count, grew_mib = map(int, proc.stdout.split())
    assert count == 3
    assert grew_mib < 16, f"the json split grew the client by {grew_mib} MiB"
