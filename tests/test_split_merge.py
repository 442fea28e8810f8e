from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from shardrun.core import split_plan
from shardrun.core.errors import MergeError, SplitError
from shardrun.core.merge import merge_concat, merge_csv, merge_json, merge_jsonl, merge_outputs
from shardrun.core.spec import load_spec
from shardrun.core.split import split_csv, split_files, split_job, split_json, split_lines

from .helpers import PY, write_job


def test_lines_split_keeps_bytes_and_order(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\r\nc\n\xff\nlast-no-newline")
    out = tmp_path / "out"
    out.mkdir()
    pieces = split_lines([src], out, 2)
    assert [p.read_bytes() for p in pieces] == [b"a\nb\r\n", b"c\n\xff\n", b"last-no-newline\n"]
    assert [p.suffix for p in pieces] == [".txt"] * 3


def test_lines_across_files_do_not_glue_lines(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1\n2")
    (tmp_path / "b.txt").write_text("3\n")
    out = tmp_path / "out"
    out.mkdir()
    pieces = split_lines([tmp_path / "a.txt", tmp_path / "b.txt"], out, 10)
    assert pieces[0].read_text() == "1\n2\n3\n"


def test_files_split_keeps_names_and_groups(tmp_path: Path) -> None:
    names = ["a b.txt", "it's.txt", '$(touch pwned).txt', "-leading.txt", "naïve.txt"]
    srcs = []
    for n in names:
        (tmp_path / n).write_text(n)
        srcs.append(tmp_path / n)
    out1, out3 = tmp_path / "o1", tmp_path / "o3"
    out1.mkdir()
    out3.mkdir()
    singles = split_files(srcs, out1, 1)
    assert [p.name for p in singles] == names
    groups = split_files(srcs, out3, 3)
    assert [sorted(c.name for c in g.iterdir()) for g in groups] == [sorted(names[:3]), sorted(names[3:])]


def test_json_split(tmp_path: Path) -> None:
    src = tmp_path / "big.json"
    src.write_text(json.dumps([{"i": i} for i in range(7)]))
    out = tmp_path / "out"
    out.mkdir()
    pieces = split_json([src], out, 3)
    assert [json.loads(p.read_text()) for p in pieces] == [
        [{"i": 0}, {"i": 1}, {"i": 2}], [{"i": 3}, {"i": 4}, {"i": 5}], [{"i": 6}]
    ]


def test_json_split_rejects_non_array(tmp_path: Path) -> None:
    src = tmp_path / "obj.json"
    src.write_text('{"a": 1}')
    with pytest.raises(SplitError, match="top-level array"):
        split_json([src], tmp_path, 1)


def test_csv_split_repeats_header_and_keeps_quoted_newlines(tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text('id,text\n1,"multi\nline"\n2,plain\n3,"quote ""x"""\n')
    out = tmp_path / "out"
    out.mkdir()
    pieces = split_csv([src], out, 2)
    assert pieces[0].read_text() == 'id,text\n1,"multi\nline"\n2,plain\n'
    assert pieces[1].read_text() == 'id,text\n3,"quote ""x"""\n'


def test_csv_split_rejects_different_headers(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("x,z\n1,2\n")
    with pytest.raises(SplitError, match="header differs"):
        split_csv([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path, 1)


def _files(tmp_path: Path, contents: list[str], suffix: str = ".txt") -> list[Path]:
    paths = []
    for i, c in enumerate(contents):
        p = tmp_path / f"o{i}{suffix}"
        p.write_text(c)
        paths.append(p)
    return paths


def test_mergers(tmp_path: Path) -> None:
    dest = tmp_path / "r"
    merge_concat(_files(tmp_path, ["a\n", "b\n"]), dest)
    assert dest.read_text() == "a\nb\n"
    merge_jsonl(_files(tmp_path, ['{"a":1}\n\n', '{"b":2}']), dest)
    assert dest.read_text() == '{"a":1}\n{"b":2}\n'
    merge_csv(_files(tmp_path, ["h\n1\n", "h\n2\n", ""]), dest)
    assert dest.read_text() == "h\n1\n2\n"
    merge_json(_files(tmp_path, ["[1, 2]", '{"x": 3}', "[]"]), dest)
    assert json.loads(dest.read_text()) == [1, 2, {"x": 3}]


def test_merge_errors_name_the_file_and_keep_old_result(tmp_path: Path) -> None:
    dest = tmp_path / "r"
    dest.write_text("previous")
    bad = _files(tmp_path, ['{"a":1}\n', "not json\n"])
    with pytest.raises(MergeError, match=r"o1\.txt: line 1 is not JSON"):
        merge_jsonl(bad, dest)
    assert dest.read_text() == "previous"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]
    with pytest.raises(MergeError, match="header differs"):
        merge_csv(_files(tmp_path, ["h\n1\n", "g\n2\n"]), dest)


def test_custom_command_splitter_and_merger(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text(json.dumps(list(range(5))))
    (tmp_path / "splitter.py").write_text(
        "import json, sys, pathlib\n"
        "items = json.load(open(sys.argv[1])); out = pathlib.Path(sys.argv[3])\n"
        "for i, x in enumerate(items):\n"
        "    (out / f'input{i}.txt').write_text(str(x))\n"
    )
    (tmp_path / "recombiner.py").write_text(
        "import sys, pathlib\n"
        "for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n"
        "    print(p.read_text())\n"
    )
    job = write_job(tmp_path, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "big.json", "command": [PY, "splitter.py", "{input}", "-o", "{outdir}"]},
        "merge": {"command": [PY, "recombiner.py", "{outdir}"], "output": "r.txt"},
    })
    spec = load_spec(job)
    out = tmp_path / "pieces"
    out.mkdir()
    pieces = split_job(spec, out)
    assert [p.name for p in pieces] == [f"input{i}.txt" for i in range(5)]
    merged = merge_outputs(spec, pieces, out)
    assert merged.read_text() == "0\n1\n2\n3\n4\n"


def test_natural_order_for_command_pieces(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    job = write_job(tmp_path, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "in", "command": [PY, "-c",
                  "import sys,pathlib\n[pathlib.Path(sys.argv[1],f'p{i}').write_text('') for i in range(12)]",
                  "{outdir}"]},
        "merge": {"output": "r.txt"},
    })
    out = tmp_path / "pieces"
    out.mkdir()
    names = [p.name for p in split_job(load_spec(job), out)]
    assert names == [f"p{i}" for i in range(12)]


def test_failing_splitter_command_shows_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "big").write_text("x")
    job = write_job(tmp_path, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "big", "command": [PY, "-c", "import sys; sys.exit('bad input at row 3')"]},
        "merge": {"output": "r.txt"},
    })
    out = tmp_path / "pieces"
    out.mkdir()
    with pytest.raises(SplitError, match="exited 1: bad input at row 3"):
        split_job(load_spec(job), out)


def test_function_splitter_and_merger(tmp_path: Path) -> None:
    (tmp_path / "myplug.py").write_text(
        "from pathlib import Path\n"
        "def split(inputs, outdir, per_task):\n"
        "    words = inputs[0].read_text().split()\n"
        "    return [Path(outdir, f'w{i}').write_text(w) and Path(outdir, f'w{i}') for i, w in enumerate(words)]\n"
        "def merge(outputs, dest):\n"
        "    Path(dest).write_text('+'.join(p.read_text() for p in outputs))\n"
    )
    (tmp_path / "in.txt").write_text("x y z")
    job = write_job(tmp_path, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "in.txt", "function": "myplug:split"},
        "merge": {"function": "myplug:merge", "output": "r.txt"},
    })
    spec = load_spec(job)
    out = tmp_path / "pieces"
    out.mkdir()
    pieces = split_job(spec, out)
    assert merge_outputs(spec, pieces, out).read_text() == "x+y+z"


def test_empty_input_makes_no_pieces_error(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("")
    job = write_job(tmp_path, {
        "app": {"command": ["cat", "{input}"]},
        "split": {"input": "big.txt"},
        "merge": {"output": "r.txt"},
    })
    out = tmp_path / "pieces"
    out.mkdir()
    with pytest.raises(SplitError, match=r"made no pieces from 'big\.txt'"):
        split_job(load_spec(job), out)


@pytest.mark.parametrize("per_task", [1, 2, 3])
def test_lines_split_streams_lines_longer_than_its_chunk(tmp_path: Path, per_task: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split_plan, "CHUNK", 4)
    data = [b"a\n", b"0123456789\n", b"\n", b"xyz\n", b"long-line-without-newline"]
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(data))
    (tmp_path / "b.txt").write_bytes(b"12345")
    out = tmp_path / "out"
    out.mkdir()
    pieces = split_lines([src, tmp_path / "b.txt"], out, per_task)
    lines = [*data[:-1], data[-1] + b"\n", b"12345\n"]
    expected = [b"".join(lines[i:i + per_task]) for i in range(0, len(lines), per_task)]
    assert [p.read_bytes() for p in pieces] == expected


def test_lines_split_of_one_huge_line_needs_little_memory(tmp_path: Path) -> None:
    """128 MiB without a newline (a sparse file: cheap): read whole, it would cost twice that."""
    big = tmp_path / "one-line.bin"
    with big.open("wb") as f:
        f.truncate(128 * 2**20)
    out = tmp_path / "out"
    out.mkdir()
    # VmHWM, the peak of this process's own memory: getrusage's ru_maxrss would also count the
    # parent's memory at the fork (pytest's, at the end of a long session).
    # The peak is taken against the same process before the split (the interpreter and imports).
    code = ("import re, sys; from pathlib import Path; from shardrun.core.split import split_lines\n"
            "def hwm(): return int(re.search(r'VmHWM:\\s*(\\d+) kB', "
            "open('/proc/self/status').read()).group(1)) // 1024\n"
            "before = hwm()\n"
            "pieces = split_lines([Path(sys.argv[1])], Path(sys.argv[2]), 10)\n"
            "print(len(pieces), pieces[0].stat().st_size, hwm() - before, before)\n")
    proc = subprocess.run([PY, "-c", code, str(big), str(out)], capture_output=True, text=True,
                          check=True, timeout=300)
    count, size, grew_mib, before_mib = map(int, proc.stdout.split())
    assert (count, size) == (1, 128 * 2**20 + 1)
    assert grew_mib < 64, f"the split grew the client by {grew_mib} MiB (from {before_mib} MiB)"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_merged_result_gets_the_users_umask(tmp_path: Path, umask: int, mode: int) -> None:
    dest = tmp_path / "r.txt"
    old = os.umask(umask)
    try:
        merge_concat(_files(tmp_path, ["a\n"]), dest)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == mode


def _merge_blocked_on_a_fifo(tmp_path: Path, dest: Path) -> subprocess.Popen[bytes]:
    """A merge that is writing its temporary file and waits (its input is a FIFO nobody writes)."""
    fifo = tmp_path / f"fifo-{len(list(tmp_path.glob('fifo-*')))}"
    os.mkfifo(fifo)
    before = set(tmp_path.iterdir())
    code = ("import sys; from pathlib import Path; from shardrun.core.merge import merge_concat\n"
            "merge_concat([Path(sys.argv[1])], Path(sys.argv[2]))\n")
    proc = subprocess.Popen([PY, "-c", code, str(fifo), str(dest)])
    for _ in range(3000):  # until its temporary file exists and is locked (or 30 s)
        new = set(tmp_path.iterdir()) - before
        if new and all(_locked(p) for p in new):
            break
        time.sleep(0.01)
    return proc


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_killed_merges_temporary_file_is_removed_by_the_next_merge(tmp_path: Path) -> None:
    dest = tmp_path / "r.txt"
    decoys = [tmp_path / ".r.txt.backup", tmp_path / ".r.txt.0123abcd", tmp_path / ".r.txt.swp"]
    for d in decoys:
        d.write_text("the user's")
    killed = _merge_blocked_on_a_fifo(tmp_path, dest)
    killed.kill()
    killed.wait()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".r.txt.") and p not in decoys]
    assert len(left) == 1  # what the killed merge left
    running = _merge_blocked_on_a_fifo(tmp_path, dest)
    try:
        in_use = {p for p in tmp_path.iterdir() if p.name.startswith(".r.txt.")} - {*decoys, *left}
        assert len(in_use) == 1
        merge_concat(_files(tmp_path, ["a\n"]), dest)
        assert dest.read_text() == "a\n"
        assert not any(p.exists() for p in left)  # the killed merge's file is gone
        assert all(p.exists() for p in in_use)  # a merge still running keeps its own
        assert all(d.read_text() == "the user's" for d in decoys)  # never the user's files
    finally:
        running.kill()
        running.wait()


def test_a_part_file_removed_before_its_merge_locks_it_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another merge's cleanup may lock and remove a part file in the moment between its creation
    and its creator's lock: the creator notices and makes another, instead of writing a lost file."""
    from shardrun.core import atomic as merge_module

    real_flock = fcntl.flock
    removed: list[str] = []

    def flock_after_a_cleanup(fd: int, op: int) -> None:
        if not removed:  # what _remove_stale_parts of another merge does, just before our lock
            path = os.readlink(f"/proc/self/fd/{fd}")
            os.unlink(path)
            removed.append(path)
        real_flock(fd, op)

    monkeypatch.setattr(merge_module.fcntl, "flock", flock_after_a_cleanup)
    with merge_module.atomic_path(tmp_path / "r.txt") as part:
        monkeypatch.setattr(merge_module.fcntl, "flock", real_flock)
        assert _locked(part)  # the file being written is locked, so no cleanup can take it
        part.write_bytes(b"a\nb\n")
    assert removed and not os.path.exists(removed[0])
    assert (tmp_path / "r.txt").read_text() == "a\nb\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.txt.")]
