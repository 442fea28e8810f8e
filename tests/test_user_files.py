"""The user's files are read-only to shardrun: it copies them, never links, moves or deletes them,
and the merged output never replaces an input, the job file, the config or anything in its home."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shardrun
from shardrun.core.errors import JobFileError
from shardrun.core.preflight import check_job, validate_job
from shardrun.core.spec import load_spec
from shardrun.core.split import split_files

from .helpers import PY, write_job

# Appends to its input (which the contract says not to do), then copies the input to the output.
APPENDER = ("import sys; open(sys.argv[1], 'ab').write(b'TASK WAS HERE\\n');"
            "open(sys.argv[2], 'wb').write(open(sys.argv[1], 'rb').read())")


def make_inputs(folder: Path, n: int = 3) -> dict[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {folder / f"in{i}.txt": f"input {i}\n".encode() for i in range(1, n + 1)}
    for path, data in files.items():
        path.write_bytes(data)
    return files


def assert_untouched(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, f"{path} was changed"
        assert path.stat().st_nlink == 1, f"{path} has another name (a hard link)"


def test_copy_file_copies_bytes_into_a_file_of_its_own(tmp_path: Path) -> None:
    from shardrun.core import filecopy

    src, dest = tmp_path / "src.bin", tmp_path / "dest.bin"
    src.write_bytes(os.urandom(3 * filecopy.CHUNK + 17))
    assert filecopy.copy_file(src, dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    assert not os.path.samefile(src, dest)
    with dest.open("ab") as f:
        f.write(b"more")
    assert not src.read_bytes().endswith(b"more")


def test_copy_file_falls_back_to_a_plain_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No reflink, no copy_file_range (another filesystem, an old kernel): still a whole copy."""
    from shardrun.core import filecopy

    def unsupported(*args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "not here")

    def no_syscall(*args: object) -> int:
        raise OSError(errno.ENOSYS, "no such call")

    monkeypatch.setattr(filecopy.fcntl, "ioctl", unsupported)
    monkeypatch.setattr(filecopy.os, "copy_file_range", no_syscall)
    src, dest = tmp_path / "src.bin", tmp_path / "dest.bin"
    src.write_bytes(os.urandom(2 * filecopy.CHUNK + 5))
    assert filecopy.copy_file(src, dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    (tmp_path / "empty").write_bytes(b"")
    assert filecopy.copy_file(tmp_path / "empty", tmp_path / "empty2") == 0


def test_files_split_copies_never_links(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "data")
    for per_task in (1, 2):
        out = tmp_path / f"pieces{per_task}"
        out.mkdir()
        pieces = split_files(sorted(inputs), out, per_task)
        stored = [p for piece in pieces for p in ([piece] if piece.is_file() else piece.iterdir())]
        assert sorted(p.read_bytes() for p in stored) == sorted(inputs.values())
        for p in stored:
            with p.open("ab") as f:
                f.write(b"changed")
    assert_untouched(inputs)


def test_an_app_that_appends_to_its_input_changes_no_file_of_the_user(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "data")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", APPENDER, "{input}", "{output}"]},
        "split": {"input": "data", "method": "files"},
        "merge": {"output": "result.txt"},
        "run": {"concurrency": 2},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert (tmp_path / "result.txt").read_bytes() == b"".join(
        data + b"TASK WAS HERE\n" for data in inputs.values())
    assert_untouched(inputs)
    shardrun.cleanup_run(result.run_id)
    assert_untouched(inputs)


def test_a_split_function_returning_the_users_files_moves_and_deletes_nothing(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "data")
    (tmp_path / "mysplit.py").write_text(
        "def split(inputs, outdir, per_task):\n    return list(inputs)\n")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", APPENDER, "{input}", "{output}"]},
        "split": {"input": "data", "function": "mysplit:split"},
        "merge": {"output": "result.txt"},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert (tmp_path / "result.txt").read_bytes() == b"".join(
        data + b"TASK WAS HERE\n" for data in inputs.values())
    assert_untouched(inputs)
    shardrun.cleanup_run(result.run_id)
    assert_untouched(inputs)


def test_a_split_function_returning_the_users_folder_gets_a_copy(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "data")
    (tmp_path / "foldersplit.py").write_text(
        "def split(inputs, outdir, per_task):\n    return [inputs[0].parent]\n")
    app = ("import os, sys; p = sys.argv[1]; names = sorted(os.listdir(p))\n"
           "for n in names: open(os.path.join(p, n), 'ab').write(b'X')\n"
           "open(sys.argv[2], 'w').write(' '.join(names) + '\\n')\n")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", app, "{input}", "{output}"]},
        "split": {"input": "data", "function": "foldersplit:split"},
        "merge": {"output": "result.txt"},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert (tmp_path / "result.txt").read_text() == "in1.txt in2.txt in3.txt\n"
    assert_untouched(inputs)
    shardrun.cleanup_run(result.run_id)
    assert_untouched(inputs)
    assert (tmp_path / "data").is_dir()


def test_a_split_command_that_links_the_users_files_gets_copies(tmp_path: Path) -> None:
    """Hard and symbolic links, to files and to a folder, made by the user's splitter."""
    inputs = make_inputs(tmp_path / "data")
    splitter = (
        "import os, sys; src, out = sys.argv[1], sys.argv[2]\n"
        "os.link(os.path.join(src, 'in1.txt'), os.path.join(out, 'p1.txt'))\n"
        "os.symlink(os.path.join(src, 'in2.txt'), os.path.join(out, 'p2.txt'))\n"
        "os.mkdir(os.path.join(out, 'p3'))\n"
        "os.symlink(src, os.path.join(out, 'p3', 'sub'))\n"
    )
    app = ("import os, sys; p = sys.argv[1]\n"
           "files = [p] if os.path.isfile(p) else sorted(os.path.join(d, n) "
           "for d, _, ns in os.walk(p) for n in ns)\n"
           "for f in files: open(f, 'ab').write(b'X')\n"
           "open(sys.argv[2], 'w').write(str(len(files)) + '\\n')\n")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", app, "{input}", "{output}"]},
        "split": {"input": "data", "command": [PY, "-c", splitter, "{input}", "{outdir}"]},
        "merge": {"output": "result.txt"},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert (tmp_path / "result.txt").read_text() == "1\n1\n3\n"
    assert_untouched(inputs)
    shardrun.cleanup_run(result.run_id)
    assert_untouched(inputs)


def test_config_and_app_files_are_stored_as_copies(tmp_path: Path) -> None:
    make_inputs(tmp_path / "data", 1)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "ref.db").write_text("reference")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                            "{input}", "{output}"],
                "config": "config.json", "files": ["ref.db"]},
        "split": {"input": "data/in1.txt"},
        "merge": {"output": "result.txt"},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    for name in ("config.json", "ref.db"):
        assert (tmp_path / name).stat().st_nlink == 1
        home = Path(os.environ["SHARDRUN_HOME"])
        stored = [p for p in home.rglob(name) if p.is_file()]
        assert stored and all(not os.path.samefile(p, tmp_path / name) for p in stored)


# ---- the merged output -------------------------------------------------------------------------


def a_job(tmp_path: Path, merge_output: str, **split: str) -> Path:
    make_inputs(tmp_path / "data")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "ref.db").write_text("reference")
    (tmp_path / "big.txt").write_text("1\n2\n")
    return write_job(tmp_path, {
        "app": {"command": [PY, "-c", "pass", "{input}", "{output}", "{config}"],
                "config": "config.json", "files": ["ref.db"]},
        "split": {"input": "big.txt", **split},
        "merge": {"output": merge_output},
    })


@pytest.mark.parametrize(
    ("output", "split", "why"),
    [
        ("big.txt", {}, "is the input"),
        ("./data/../big.txt", {}, "is the input"),
        ("data/in2.txt", {"input": "data/in*.txt"}, "is the input"),
        ("data/merged.txt", {"input": "data/*.txt"}, "is matched by [split] input"),
        ("data/new/merged.txt", {"input": "data/**/*.txt"}, "is matched by [split] input"),
        ("data/result.txt", {"input": "data"}, "is inside the input folder"),
        ("data/sub/result.txt", {"input": "data", "method": "files"}, "is inside the input folder"),
        ("job.toml", {}, "is the job file"),
        ("config.json", {}, "is [app] config"),
        ("ref.db", {}, "is [app] files[0]"),
        ("data", {}, "is a folder"),
        ("big.txt/result.txt", {}, "not a folder"),
    ],
)
def test_output_that_would_replace_a_users_file_is_refused(tmp_path: Path, output: str,
                                                           split: dict[str, str], why: str) -> None:
    job = a_job(tmp_path, output, **split)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(JobFileError) as err:
        validate_job(job)
    message = str(err.value)
    assert str(job) in message and "[merge] output" in message and why in message
    assert "\n" not in message
    with pytest.raises(JobFileError, match=r"\[merge\] output"):
        shardrun.run_job(job)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p in before} == before


def test_output_through_a_symlink_to_an_input_is_refused(tmp_path: Path) -> None:
    job = a_job(tmp_path, "link.txt")
    (tmp_path / "link.txt").symlink_to(tmp_path / "big.txt")
    with pytest.raises(JobFileError, match=r"\[merge\] output 'link.txt' is the input"):
        validate_job(job)
    (tmp_path / "out").symlink_to(tmp_path / "data", target_is_directory=True)
    job = a_job(tmp_path, "out/new.txt", input="data")
    with pytest.raises(JobFileError, match="is inside the input folder"):
        validate_job(job)


def test_outputs_beside_the_inputs_but_not_matched_are_fine(tmp_path: Path) -> None:
    for output, split in [("data/sub/merged.txt", {"input": "data/*.txt"}),
                          ("data/merged.csv", {"input": "data/*.txt"}),
                          ("result.txt", {"input": "data"}),
                          ("data/.hidden.txt", {"input": "data/*.txt"})]:
        validate_job(a_job(tmp_path, output, **split))


def test_output_inside_shardrun_home_is_refused(tmp_path: Path, shardrun_home: Path) -> None:
    job = a_job(tmp_path, str(shardrun_home / "ledger.sqlite"))
    with pytest.raises(JobFileError, match="is inside shardrun's home"):
        validate_job(job)  # the default home (SHARDRUN_HOME here)
    other = tmp_path / "other-home"
    job = a_job(tmp_path, str(other / "work" / "x.txt"))
    validate_job(job)
    with pytest.raises(JobFileError, match="is inside shardrun's home"):
        check_job(load_spec(job), home=other)
    with pytest.raises(JobFileError, match="is inside shardrun's home"):
        validate_job(job, home=other)


def test_cli_validate_refuses_with_one_line_and_exit_2(tmp_path: Path) -> None:
    job = a_job(tmp_path, "big.txt")
    proc = subprocess.run([sys.executable, "-m", "shardrun", "validate", str(job)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "[merge] output 'big.txt' is the input" in lines[0]
    assert "Traceback" not in proc.stderr
