"""Real programs without wrappers (issue 12): stdout as the output, outputs named after their inputs,
the folder merge, and tasks shown with their input's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import shardrun
from shardrun.cli.main import main
from shardrun.core.errors import JobFileError
from shardrun.core.ledger import Ledger
from shardrun.core.merge import MERGED_MARK, check_output, merge_folder
from shardrun.core.spec import load_spec
from shardrun.core.status import task_log

from .helpers import PY, write_job

# Prints its input upper-cased on stdout and writes no file: a program like jq, gzip -c or pandoc.
PRINTS = [PY, "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read().upper())", "{input}"]


def files_job(folder: Path, names: dict[str, str], *, app: dict[str, object] | None = None,
              merge: dict[str, object] | None = None) -> Path:
    (folder / "in").mkdir(exist_ok=True)
    for name, text in names.items():
        (folder / "in" / name).write_text(text)
    return write_job(folder, {
        "app": app or {"command": PRINTS, "stdout": "output", "output_name": "{stem}.out"},
        "split": {"input": "in/*", "method": "files"},
        "merge": merge or {"method": "folder", "output": "merged"},
        "run": {"concurrency": 2, "retries": 0},
    })


# -- stdout as the output ----------------------------------------------------------------------
def test_stdout_output_makes_the_programs_stdout_its_output(tmp_path: Path, shardrun_home: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(12)))
    job = write_job(tmp_path, {
        "app": {"command": PRINTS, "stdout": "output"},
        "split": {"input": "big.txt", "per_task": 5},
        "merge": {"output": "result.txt"},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(12))
    # the stdout went to the output: no separate stdout log is kept
    assert task_log(result.run_id, "task-00001", stream="stdout", home=shardrun_home) == b""


def test_stdout_must_be_output_if_set(tmp_path: Path) -> None:
    job = write_job(tmp_path, {"app": {"command": ["x"], "stdout": "log"},
                               "split": {"input": "a"}, "merge": {"output": "b"}})
    with pytest.raises(JobFileError, match=r"\[app\] stdout"):
        load_spec(job)


def test_validate_warns_when_nothing_names_the_output(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("x\n")
    bare = write_job(tmp_path, {"app": {"command": ["cat", "{input}"]},
                                "split": {"input": "a.txt"}, "merge": {"output": "b.txt"}})
    assert main(["validate", str(bare)]) == 0
    assert "warning: [app] command has no {output}" in capsys.readouterr().out
    captured = write_job(tmp_path, {"app": {"command": ["cat", "{input}"], "stdout": "output"},
                                    "split": {"input": "a.txt"}, "merge": {"output": "b.txt"}})
    assert main(["validate", str(captured)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_the_batch_task_script_sends_stdout_to_output_path(tmp_path: Path) -> None:
    from shardrun.providers.azure.batch_tasks import command_line

    from .test_batch_parts import files, run_like_batch

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "piece 1.txt").write_text("data\n")
    proc = run_like_batch(command_line(["cat", "{input}"], files(), "", stdout_output=True), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "result.txt").read_text() == "data\n"
    assert proc.stdout == ""
    # without it, stdout stays the log and the missing output fails the attempt
    (tmp_path / "out" / "result.txt").unlink()
    proc = run_like_batch(command_line(["cat", "{input}"], files(), ""), tmp_path)
    assert proc.returncode != 0 and proc.stdout == "data\n"


# -- outputs keep their names ------------------------------------------------------------------
@pytest.mark.parametrize(("template", "piece", "name"), [
    ("{stem}.jpg", "photo5.png", "photo5.jpg"),
    ("{name}.gz", "a.tar", "a.tar.gz"),
    ("{stem}{suffix}", "x.tar.gz", "x.tar.gz"),
    ("out-{stem}", ".bashrc", "out-.bashrc"),
    ("{stem}.html", "README", "README.html"),
    ("fixed.txt", "anything.md", "fixed.txt"),
])
def test_output_name_templates(tmp_path: Path, template: str, piece: str, name: str) -> None:
    job = write_job(tmp_path, {"app": {"command": ["x"], "output_name": template},
                               "split": {"input": "a"}, "merge": {"output": "b"}})
    assert load_spec(job).app.output_name_for(piece) == name


@pytest.mark.parametrize(("template", "message"), [
    ("{base}.txt", "{base} is not one of"),
    ("{stem}/x", "must be a plain file name"),
    ("{stem}" + "x" * 260, "at most 255 bytes"),
])
def test_bad_output_name_templates_are_refused(tmp_path: Path, template: str, message: str) -> None:
    job = write_job(tmp_path, {"app": {"command": ["x"], "output_name": template},
                               "split": {"input": "a"}, "merge": {"output": "b"}})
    with pytest.raises(JobFileError, match=r"\[app\] output_name: .*" + message.replace("{", r"\{")):
        load_spec(job)


def test_folder_merge_keeps_the_names_and_replaces_only_its_own_folder(
        tmp_path: Path, shardrun_home: Path) -> None:
    job = files_job(tmp_path, {"photo1.txt": "one\n", "photo2.txt": "two\n", "notes.md": "three\n"})
    result = shardrun.run_job(job)
    assert result.ok, result
    merged = tmp_path / "merged"
    assert result.merged_output == merged
    assert sorted(p.name for p in merged.iterdir()) == [MERGED_MARK, "notes.out", "photo1.out",
                                                        "photo2.out"]
    assert (merged / "photo2.out").read_text() == "TWO\n"
    # a second run replaces the folder it wrote, with no stale file left
    (tmp_path / "in" / "photo1.txt").unlink()
    again = shardrun.run_job(job, new=True)
    assert again.ok, again
    assert sorted(p.name for p in merged.iterdir()) == [MERGED_MARK, "notes.out", "photo2.out"]
    assert not [p for p in tmp_path.iterdir() if ".shardrun-" in p.name]  # no temp folder left


def test_a_name_clash_is_refused_before_any_task_runs(tmp_path: Path, shardrun_home: Path) -> None:
    marker = tmp_path / "ran"
    app = {"command": [PY, "-c", f"open({str(marker)!r}, 'w')", "{input}"], "stdout": "output",
           "output_name": "{stem}.html"}
    job = files_job(tmp_path, {"guide.md": "a", "guide.txt": "b", "other.md": "c"}, app=app)
    with pytest.raises(JobFileError, match=r"the inputs 'guide.md' and 'guide.txt' both make the "
                                           r"output 'guide.html'"):
        shardrun.run_job(job)
    assert not marker.exists()
    assert not (tmp_path / "merged").exists()


def test_a_rendered_name_too_long_names_the_input(tmp_path: Path, shardrun_home: Path) -> None:
    app = {"command": PRINTS, "stdout": "output", "output_name": "{name}.{name}"}
    job = files_job(tmp_path, {"a" * 200 + ".txt": "x"}, app=app)
    with pytest.raises(JobFileError, match=r"output_name '\{name\}.\{name\}' for the input 'aaa.*255"):
        shardrun.run_job(job)


def test_folder_merge_destinations_that_are_refused(tmp_path: Path) -> None:
    job = files_job(tmp_path, {"a.txt": "x"})
    spec = load_spec(job)
    dest = tmp_path / "merged"
    dest.mkdir()
    (dest / "mine.txt").write_text("the user's")
    with pytest.raises(JobFileError, match="is a folder shardrun did not write"):
        check_output(spec, home=tmp_path / "home")
    (dest / "mine.txt").unlink()
    dest.rmdir()
    dest.write_text("a file")
    with pytest.raises(JobFileError, match="is a file or a link"):
        check_output(spec, home=tmp_path / "home")
    dest.unlink()
    check_output(spec, home=tmp_path / "home")  # absent: fine
    # a folder shardrun wrote, but the job's input is now inside it: never replaced
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / MERGED_MARK).write_text("")
    (tmp_path / "box" / "a.txt").write_text("input")
    holds_input = write_job(tmp_path, {"app": {"command": PRINTS, "stdout": "output"},
                                       "split": {"input": "box/a.txt", "method": "files"},
                                       "merge": {"method": "folder", "output": "box"}}, name="j2.toml")
    with pytest.raises(JobFileError, match="holds the input"):
        check_output(load_spec(holds_input), home=tmp_path / "home")


def test_folder_merge_refuses_two_outputs_of_one_name(tmp_path: Path) -> None:
    from shardrun.core.errors import MergeError

    (tmp_path / "t1").mkdir()
    (tmp_path / "t2").mkdir()
    (tmp_path / "t1" / "x.out").write_text("1")
    (tmp_path / "t2" / "x.out").write_text("2")
    with pytest.raises(MergeError, match=r"two outputs are named 'x\.out'"):
        merge_folder([tmp_path / "t1" / "x.out", tmp_path / "t2" / "x.out"], tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not [p for p in tmp_path.iterdir() if ".shardrun-" in p.name]


# -- tasks named with their input --------------------------------------------------------------
def test_failures_status_and_logs_name_the_input(tmp_path: Path, shardrun_home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    app = [PY, "-c", "import sys; t = open(sys.argv[1]).read(); "
           "sys.exit('cannot read ' + sys.argv[1]) if 'bad' in t else print(t)", "{input}"]
    job = files_job(tmp_path, {"photo1.png": "ok", "photo5.png": "bad"},
                    app={"command": app, "stdout": "output", "output_name": "{stem}.txt"})
    assert main(["run", str(job), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "task-00002 (photo5.png) failed after 1 attempt(s)" in printed
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs(1)[0].run_id
    result = shardrun.run_status(run_id, home=shardrun_home)
    assert [(f["task_id"], f["input_name"]) for f in result["failed"]] == [("task-00002", "photo5.png")]
    main(["status", run_id, "--json"])
    status_json = json.loads(capsys.readouterr().out)
    assert status_json["failed"][0]["input_name"] == "photo5.png"
    # `logs` takes the input's name as well as the id
    assert b"cannot read" in task_log(run_id, "photo5.png", home=shardrun_home)
    main(["status", run_id])
    assert "task-00002 (photo5.png)" in capsys.readouterr().out


def test_stdout_output_in_podman_containers(tmp_path: Path, test_image: str,
                                            shardrun_home: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(6)))
    job = write_job(tmp_path, {
        "app": {"image": test_image, "command": ["sed", "s/line/LINE/", "{input}"],
                "stdout": "output"},
        "split": {"input": "big.txt", "per_task": 2},
        "merge": {"output": "result.txt"},
        "run": {"concurrency": 2, "container_options": ["--network", "none"]},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(6))


def test_stdout_output_needs_a_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("x\n")
    job = write_job(tmp_path, {"app": {"image": "localhost/app:1", "stdout": "output"},
                               "split": {"input": "a.txt"}, "merge": {"output": "b.txt"},
                               "run": {"runtime": "podman"}})
    assert main(["validate", str(job)]) == 2
    assert '[app] stdout = "output" needs [app] command' in capsys.readouterr().err


def test_a_piece_split_made_is_not_named_beside_the_id() -> None:
    from shardrun.core.outcome import task_label

    assert task_label("task-00003", "piece-000003.txt") == "task-00003"
    assert task_label("task-00003", "piece-000003") == "task-00003"
    assert task_label("task-00003", "photo3.png") == "task-00003 (photo3.png)"
    assert task_label("task-00003", "piece-of-cake.txt") == "task-00003 (piece-of-cake.txt)"


def test_a_long_script_argument_is_no_file_name(tmp_path: Path) -> None:
    """Before: OSError 'File name too long' from the output checks, for any long `sh -c` script."""
    (tmp_path / "a.txt").write_text("x\n")
    script = 'cat "$1" > "$2"; ' + "true; " * 60
    job = write_job(tmp_path, {"app": {"command": ["sh", "-c", script, "sh", "{input}", "{output}"]},
                               "split": {"input": "a.txt"}, "merge": {"output": "b.txt"}})
    check_output(load_spec(job), home=tmp_path / "home")
    assert main(["validate", str(job)]) == 0


def test_a_link_is_never_a_folder_merges_destination(tmp_path: Path) -> None:
    job = files_job(tmp_path, {"a.txt": "x"})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / MERGED_MARK).write_text("")
    (tmp_path / "merged").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(JobFileError, match="is a file or a link"):
        check_output(load_spec(job), home=tmp_path / "home")
