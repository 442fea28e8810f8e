"""Pieces as plans (core/split_plan.py): materializing a plan gives today's local pieces, and the
shell cut a Batch task runs (providers/azure/batch_pieces.py) gives the same bytes as Python."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
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
from shardrun.providers.azure import batch_pieces
from shardrun.providers.azure.batch_pieces import CUT_SCRIPT, PREP_COMMAND, SOURCES_DIR, choose_mode, cut_args
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


def prepare_node(prep: Path) -> None:
    """What the job preparation's command does on a node, run as the agent would run it."""
    env = {"PATH": os.environ["PATH"], "AZ_BATCH_TASK_WORKING_DIR": str(prep)}
    subprocess.run(shlex.split(PREP_COMMAND), env=env, cwd=prep, check=True, timeout=60)


def shell_cut(shell: list[str], plan: PiecePlan, inputs: list[Path], node: Path) -> bytes:
    prep = node / "prep"
    wd = node / "wd"
    shutil.rmtree(node, ignore_errors=True)
    (prep / SOURCES_DIR).mkdir(parents=True)
    wd.mkdir()
    for n, path in enumerate(inputs):
        (prep / SOURCES_DIR / str(n)).symlink_to(path)  # the agent's download, without the copy
    prepare_node(prep)
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
    with pytest.raises(AssertionError, match="cut 9 of the 20 bytes at block 0 of"):
        shell_cut(shell, plan, [src], tmp_path / "node")


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_a_missing_source_fails_the_cut_naming_it(tmp_path: Path, shell: list[str]) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"0123456789\n")
    plan = PiecePlan("piece-000001.txt", ((1, 0, 3),))  # source 1 was never brought to the node
    with pytest.raises(AssertionError, match=f"the source file .*/{SOURCES_DIR}/1 is missing"):
        shell_cut(shell, plan, [src], tmp_path / "node")


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_a_node_without_the_preparations_cut_script_fails_the_task(tmp_path: Path, shell: list[str]) -> None:
    (tmp_path / "prep").mkdir()
    env = {"PATH": os.environ["PATH"], "AZ_BATCH_JOB_PREP_WORKING_DIR": str(tmp_path / "prep"),
           "AZ_BATCH_TASK_WORKING_DIR": str(tmp_path)}
    proc = subprocess.run([*shell, "-c", CUT_SCRIPT + "echo the app ran", "shardrun",
                           *cut_args([(0, 0, 1)], "in/p")], env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0 and not proc.stdout and b"shardrun-cut.sh" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_the_cut_reaches_past_4_gib(tmp_path: Path, shell: list[str]) -> None:
    """busybox's tail -c +N fails from about 3 GiB on (and refuses N >= 4 GiB); the cut seeks with
    dd instead. A sparse 5 GiB input costs no disk."""
    src = tmp_path / "big.txt"
    marks = {2**31 - 3: b"two\n", 3 * 2**30 + 7: b"three\n", 2**32 - 2: b"four\n", 5 * 2**30 - 5: b"end\n"}
    with src.open("wb") as f:
        f.truncate(5 * 2**30)
        for at, data in marks.items():
            f.seek(at)
            f.write(data)
    plan = PiecePlan("piece-000001.txt", tuple((0, at, len(data)) for at, data in marks.items()))
    assert shell_cut(shell, plan, [src], tmp_path / "node") == b"".join(marks.values())


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_fails_the_cut(tmp_path: Path, shell: list[str]) -> None:
    """The piece cannot be written (here /dev/full): the cut fails, the app never starts."""
    (tmp_path / "prep" / SOURCES_DIR).mkdir(parents=True)
    (tmp_path / "prep" / SOURCES_DIR / "0").write_bytes(b"0123456789")
    prepare_node(tmp_path / "prep")
    (tmp_path / "wd" / "in").mkdir(parents=True)
    (tmp_path / "wd" / "in" / "p").symlink_to("/dev/full")
    env = {"PATH": os.environ["PATH"], "AZ_BATCH_JOB_PREP_WORKING_DIR": str(tmp_path / "prep"),
           "AZ_BATCH_TASK_WORKING_DIR": str(tmp_path / "wd")}
    proc = subprocess.run([*shell, "-c", CUT_SCRIPT + "echo the app ran", "shardrun",
                           *cut_args([(0, 2, 5)], "in/p")], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1 and not proc.stdout
    assert b"shardrun: cut 6 of the 5 bytes at block 0 of" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_a_literal_of_every_byte_value_is_cut_as_is(tmp_path: Path, shell: list[str]) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"ab")
    plan = PiecePlan("piece-000001.txt", (bytes(range(256)), (0, 1, 1), b"%s%%\\n'\"$(x)"))
    assert shell_cut(shell, plan, [src], tmp_path / "node") == bytes(range(256)) + b"b%s%%\\n'\"$(x)"


def test_a_task_by_reference_carries_its_ranges_not_the_cut_script() -> None:
    """The cut script travels once per job (the preparation writes it): a task's command line
    grows only by its ranges, whatever the script's length."""
    from shardrun.providers.azure.batch_tasks import TaskFiles, command_line

    def line(cut: tuple[str, ...]) -> str:
        files = TaskFiles(inputs=(), input_path="in/piece-000001.txt", output_path="out/o",
                          output_blob="outputs/t/o", log_blobs={}, cut=cut)
        return command_line(["cat", "{input}"], files, "cfg")

    cut = cut_args([b"[", (0, 10, 20), b"]"], "in/piece-000001.txt")
    assert len(line(cut)) - len(line(())) < 150 and "dd if=" not in line(cut)
    assert "dd if=" in shlex.split(PREP_COMMAND)[-1]


def test_no_number_the_node_tools_see_reaches_2_gib() -> None:
    """A 3 GiB range 5 GiB into a source: parts of at most 1 GiB, each found by its block."""
    args = cut_args([(2, 5 * 2**30 + 3, 3 * 2**30 + 1)], "in/p")
    parts = [args[i:i + 6] for i in range(1, len(args) - 1, 6)]
    assert [p[0] for p in parts] == ["r"] * 4 and args[-1] == "--"
    assert all(int(n) < 2**31 for p in parts for n in p[1:])
    at = 5 * 2**30 + 3
    for _, index, block, count, start, size in parts:  # contiguous, and each inside its blocks
        assert index == "2" and int(block) * 65536 + int(start) - 1 == at
        assert int(start) - 1 + int(size) <= int(count) * 65536
        at += int(size)
    assert at == 8 * 2**30 + 4


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0].rsplit("/", 1)[-1])
def test_a_range_longer_than_max_range_is_cut_in_parts(tmp_path: Path, shell: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges longer than MAX_RANGE (1 GiB: busybox's head and wc count in 32 bits) go in parts;
    a small MAX_RANGE and BLOCK_SIZE check the parts join up, across block boundaries."""
    monkeypatch.setattr(batch_pieces, "MAX_RANGE", 7)
    src = tmp_path / "a.txt"
    src.write_bytes(bytes(range(256)) * 3)
    plan = PiecePlan("piece-000001.txt", ((0, 5, 700), b"\n", (0, 65530, 0), (0, 3, 1)))
    args = cut_args(plan.segments, "in/x")
    assert args.count("r") == 101 and all(int(a) <= 7 for a in args[6::6][:100])
    assert shell_cut(shell, plan, [src], tmp_path / "node") == src.read_bytes()[5:705] + b"\n" + b"\x03"


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
