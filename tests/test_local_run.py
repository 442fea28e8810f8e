"""End to end on the local backend, through the library API."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import shardrun
from shardrun.core.compute import AttemptEvent
from shardrun.core.ledger import Ledger
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.runtime import ProcessRuntime

from .helpers import APPS, PY, lines_job, write_job


def ledger(home: Path) -> Ledger:
    return Ledger(home / "ledger.sqlite")


def test_lines_job_merges_in_task_order(tmp_path: Path, shardrun_home: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(40)))
    # Later tasks finish first (task n waits for task n+1's marker): the merge must still follow
    # task order, not completion order.
    app = ("import os, sys, time, pathlib; n = int(os.environ['SHARDRUN_TASK_ID'].split('-')[1]);"
           "d = pathlib.Path(sys.argv[3]); t = time.time();"
           "exec('while n < 8 and not (d / str(n + 1)).exists() and time.time() - t < 120: time.sleep(0.01)');"
           "open(sys.argv[2], 'w').write(open(sys.argv[1]).read().upper()); (d / str(n)).touch()")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", app, "{input}", "{output}", str(tmp_path)]},
        "split": {"input": "big.txt", "per_task": 5},
        "merge": {"output": "out/result.txt"},
        "run": {"concurrency": 8},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    assert result.counts == {"pending": 0, "running": 0, "succeeded": 8, "failed": 0}
    assert result.merged_output == tmp_path / "out" / "result.txt"
    assert result.merged_output.read_text() == "".join(f"LINE {i}\n" for i in range(40))
    attempts = ledger(shardrun_home).attempts(result.run_id)
    assert len(attempts) == 8
    assert all(a["result"] == "succeeded" and a["exit_code"] == 0 for a in attempts)
    assert {a["worker"] for a in attempts} <= {f"local-{i}" for i in range(1, 9)}
    # later tasks really did finish first, so the order check above means something
    ends = {a["task_id"]: a["ended_at"] for a in attempts}
    assert ends["task-00008"] < ends["task-00001"]


def test_task_contract_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", "c2VjcmV0")
    monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2")
    (tmp_path / "in.txt").write_text("a\nb\n")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "ref.db").write_text("reference")
    job = write_job(tmp_path, {
        "app": {"command": [PY, str(APPS / "envdump.py")], "config": "config.json",
                "files": ["ref.db"], "env": {"GREETING": "hi", "INPUT_PATH": "ignored"},
                "output_name": "env.json"},
        "split": {"input": "in.txt", "per_task": 1},
        "merge": {"method": "jsonl", "output": "envs.jsonl"},
    })
    result = shardrun.run_job(job)
    assert result.ok
    envs = [json.loads(line) for line in result.merged_output.read_text().splitlines()]  # type: ignore[union-attr]
    assert [e["SHARDRUN_TASK_ID"] for e in envs] == ["task-00001", "task-00002"]
    assert [e["input"] for e in envs] == ["a\n", "b\n"]
    for e in envs:
        wd = Path(e["AZ_BATCH_TASK_WORKING_DIR"])
        assert e["cwd"] == str(wd)
        assert wd.parent == Path(e["AZ_BATCH_TASK_DIR"])
        assert e["AZ_BATCH_TASK_ID"] == e["SHARDRUN_TASK_ID"]
        assert e["AZ_BATCH_JOB_ID"] == e["SHARDRUN_RUN_ID"] == result.run_id
        assert e["SHARDRUN_ATTEMPT"] == "1"
        assert Path(e["OUTPUT_PATH"]) == wd / "env.json"
        assert Path(e["CONFIG_PATH"]).read_text() == "{}"
        assert Path(e["AZ_BATCH_NODE_SHARED_DIR"]).is_dir()
        assert e["INPUT_PATH"] != "ignored"  # the job's env cannot override the contract
        assert e["leaked"] == []  # client secrets are not inherited
        assert e["ref"] == "reference"  # [app] files appear in the working folder


def test_first_attempt_fails_on_a_third_of_tasks_and_retries_succeed(tmp_path: Path,
                                                                      shardrun_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("CALLS_LOG", str(calls))
    (tmp_path / "big.txt").write_text("".join(f"{i}\n" for i in range(30)))
    job = write_job(tmp_path, {
        "app": {"command": [PY, str(APPS / "flaky.py"), "{input}", "{output}"], "env": {"CALLS_LOG": str(calls)}},
        "split": {"input": "big.txt", "per_task": 1},
        "merge": {"output": "r.txt"},
        "run": {"retries": 2, "concurrency": 3},
    })
    result = shardrun.run_job(job)
    assert result.ok
    assert Path(result.merged_output or "").read_text() == "".join(f"{i}\n" for i in range(30))
    lines = calls.read_text().split("\n")[:-1]
    assert len(lines) == 40  # 30 first attempts + 10 second attempts
    attempts = ledger(shardrun_home).attempts(result.run_id)
    failed = [a for a in attempts if a["result"] == "failed"]
    assert {a["task_id"] for a in failed} == {f"task-{i:05d}" for i in range(3, 31, 3)}
    assert all(a["exit_code"] == 7 and a["reason"] == "exit code 7" for a in failed)
    assert shardrun.run_status(result.run_id)["retries"] == 10


def test_failures_are_reported_and_retry_failed_reruns_only_them(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls.log"
    broken = tmp_path / "broken"
    broken.write_text("")
    (tmp_path / "big.txt").write_text("".join(f"{i}\n" for i in range(6)))
    app = ("import os, sys, shutil; t = os.environ['SHARDRUN_TASK_ID'];"
           f"open({str(calls)!r}, 'a').write(t + '\\n');"
           f"bad = os.path.exists({str(broken)!r}) and t in ('task-00002', 'task-00005');"
           "bad and sys.exit(f'cannot parse {t}: bad row');"
           "shutil.copyfile(sys.argv[1], sys.argv[2])")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", app, "{input}", "{output}"]},
        "split": {"input": "big.txt", "per_task": 1},
        "merge": {"output": "r.txt"},
        "run": {"retries": 1},
    })
    result = shardrun.run_job(job)
    assert result.status == "failed"
    assert result.merged_output is None and not (tmp_path / "r.txt").exists()
    assert [(f.task_id, f.attempts, f.reason) for f in result.failed] == [
        ("task-00002", 2, "exit code 1"), ("task-00005", 2, "exit code 1")]
    assert "cannot parse task-00002: bad row" in result.failed[0].stderr_tail
    assert shardrun.task_log(result.run_id, "task-00002", attempt=1) == b"cannot parse task-00002: bad row\n"

    broken.unlink()
    calls.write_text("")
    again = shardrun.retry_run(result.run_id)
    assert again.ok and again.run_id == result.run_id
    assert sorted(calls.read_text().split()) == ["task-00002", "task-00005"]
    assert (tmp_path / "r.txt").read_text() == "".join(f"{i}\n" for i in range(6))
    attempts = {(a["task_id"], a["attempt"]) for a in shardrun.run_status(result.run_id)["failed"]}
    assert attempts == set()
    with pytest.raises(shardrun.UsageError, match="no failed tasks"):
        shardrun.retry_run(result.run_id)


def test_allow_failures_merges_what_succeeded(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("ok\nbad\nok\n")
    app = "import sys; d = open(sys.argv[1]).read(); d.startswith('bad') and sys.exit(3); open(sys.argv[2], 'w').write(d)"
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", app, "{input}", "{output}"]},
        "split": {"input": "big.txt"},
        "merge": {"output": "r.txt"},
        "run": {"retries": 0, "allow_failures": True},
    })
    result = shardrun.run_job(job)
    assert result.ok and len(result.failed) == 1
    assert (tmp_path / "r.txt").read_text() == "ok\nok\n"


def test_exit_zero_without_output_fails_with_reason(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x\n")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", "pass", "{input}", "{output}"]},
        "split": {"input": "big.txt"},
        "merge": {"output": "r.txt"},
        "run": {"retries": 0},
    })
    result = shardrun.run_job(job)
    assert result.status == "failed"
    assert result.failed[0].reason == "exited 0 but wrote nothing at OUTPUT_PATH (output.txt)"


def test_timeout_kills_the_whole_process_group(tmp_path: Path, shardrun_home: Path) -> None:
    (tmp_path / "big.txt").write_text("x\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    # The app starts a grandchild that would outlive a kill of the direct child only. A shell, not
    # Python: on a loaded machine an interpreter can take most of the 1 s timeout to start, and the
    # timeout could then land before the grandchild exists. Each attempt names its grandchild in a
    # file of its own, written whole (renamed into place), so a kill cannot leave half a pid.
    app = ('sleep 60 & echo $! > "$0/.$SHARDRUN_ATTEMPT"; mv "$0/.$SHARDRUN_ATTEMPT" "$0/$SHARDRUN_ATTEMPT";'
           ' wait')
    job = write_job(tmp_path, {
        "app": {"command": ["sh", "-c", app, str(pids), "{input}", "{output}"]},
        "split": {"input": "big.txt"},
        "merge": {"output": "r.txt"},
        "run": {"retries": 1, "timeout": "1s"},
    })
    result = shardrun.run_job(job)
    assert result.status == "failed"
    attempts = ledger(shardrun_home).attempts(result.run_id)
    assert [a["result"] for a in attempts] == ["timeout", "timeout"]
    assert attempts[0]["reason"] == "timed out after 1s"
    grandchildren = [int(p.read_text()) for p in pids.iterdir() if not p.name.startswith(".")]
    assert grandchildren, "no attempt started its grandchild within the 1 s timeout"
    # The group was signalled; the kernel ends each member when it next runs (bounded wait).
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in grandchildren if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


HOSTILE = ["a b.txt", "it's \"quoted\".txt", "$(touch pwned).txt", "-rf.txt", "naïve ünïcode.txt", "`id`;x.txt"]


@pytest.mark.parametrize("per_task", [1, 2])
def test_hostile_file_names_work_and_reach_no_shell(tmp_path: Path, per_task: int) -> None:
    data = tmp_path / "in dir $HOME"
    data.mkdir()
    for i, name in enumerate(HOSTILE):
        (data / name).write_text(f"{i}\n")
    cwd_before = set(Path.cwd().iterdir())
    app = ("import os, sys, pathlib; p = pathlib.Path(sys.argv[1]);"
           "files = sorted(p.iterdir()) if p.is_dir() else [p];"
           "open(sys.argv[2], 'w').write(''.join(f.name + '=' + f.read_text() for f in files))")
    job = write_job(tmp_path, {
        "app": {"command": [PY, "-c", app, "{input}", "{output}"]},
        "split": {"input": "in dir $HOME", "method": "files", "per_task": per_task},
        "merge": {"output": "r.txt"},
    })
    result = shardrun.run_job(job)
    assert result.ok
    merged = (tmp_path / "r.txt").read_text()
    for i, name in enumerate(HOSTILE):
        assert f"{name}={i}\n" in merged
    assert not list(tmp_path.rglob("pwned"))
    assert set(Path.cwd().iterdir()) == cwd_before
    assert sorted(p.name for p in data.iterdir()) == sorted(HOSTILE)  # inputs untouched


def test_cleanup_removes_only_that_run(tmp_path: Path, shardrun_home: Path) -> None:
    a = shardrun.run_job(lines_job(tmp_path, 20, 5))
    b = shardrun.run_job(lines_job(tmp_path, 20, 5), new=True)
    decoy = shardrun_home / "store" / f"{a.run_id}-decoy"
    decoy.mkdir(parents=True)
    (decoy / "keep").write_text("x")
    removed = shardrun.cleanup_run(a.run_id)
    assert any(a.run_id in r for r in removed)
    assert not (shardrun_home / "store" / a.run_id).exists()
    assert not (shardrun_home / "work" / a.run_id).exists()
    assert (shardrun_home / "store" / b.run_id / "outputs").is_dir()
    assert (decoy / "keep").exists()
    assert shardrun.run_status(a.run_id)["status"] == "cleaned"
    assert (tmp_path / "result.txt").exists()  # the merged result is the user's, not scratch
    assert shardrun.cleanup_run(a.run_id) == []


def test_resume_after_client_death_trusts_stored_outputs(tmp_path: Path, shardrun_home: Path) -> None:
    """The window between storing an output and recording it: the task must not run again."""
    job = lines_job(tmp_path, 30, 10)
    result = shardrun.run_job(job)
    db = ledger(shardrun_home)
    # Pretend the client died after task 2's output was stored but before the ledger knew.
    db.db.execute("UPDATE tasks SET state='running' WHERE task_id='task-00002'")
    db.db.execute("UPDATE runs SET status='running'")
    db.db.execute("UPDATE attempts SET result='running', ended_at=NULL WHERE task_id='task-00002'")
    again = shardrun.run_job(job)
    assert again.resumed and again.run_id == result.run_id and again.ok
    assert len(db.attempts(result.run_id, "task-00002")) == 1
    assert db.attempts(result.run_id, "task-00002")[0]["result"] == "lost"


def test_job_file_changed_since_unfinished_run(tmp_path: Path, shardrun_home: Path) -> None:
    job = lines_job(tmp_path, 30, 10)
    result = shardrun.run_job(job)
    ledger(shardrun_home).db.execute("UPDATE runs SET status='interrupted'")
    lines_job(tmp_path, 30, 5)
    with pytest.raises(shardrun.UsageError, match=f"changed since unfinished run {result.run_id}"):
        shardrun.run_job(job)
    assert shardrun.run_job(job, new=True).ok


def test_run_ids_are_safe_for_azure(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("1\n")
    job = write_job(tmp_path, {
        "job": {"name": "Ünïcode -- Job__Name with spaces and a very long tail indeed"},
        "app": {"command": ["cp", "{input}", "{output}"]},
        "split": {"input": "x.txt"},
        "merge": {"output": "r.txt"},
    })
    ids = {shardrun.run_job(job, new=True).run_id for _ in range(3)}
    assert len(ids) == 3
    from shardrun.core.layout import is_run_id
    assert all(is_run_id(i) and len(i) <= 40 and "--" not in i for i in ids)


def test_status_json_and_runs(tmp_path: Path) -> None:
    result = shardrun.run_job(lines_job(tmp_path, 20, 5))
    info = shardrun.run_status(result.run_id)
    assert info["status"] == "succeeded"
    assert info["tasks"] == {"total": 4, "pending": 0, "running": 0, "succeeded": 4, "failed": 0}
    assert info["merged_output"] == str(tmp_path / "result.txt")
    assert [r["run_id"] for r in shardrun.list_runs()] == [result.run_id]
    assert os.path.isabs(info["job_path"])


def test_process_runtime_looks_a_bare_program_up_on_the_task_path(tmp_path: Path) -> None:
    first, second = tmp_path / "bin1", tmp_path / "bin2"
    first.mkdir()
    second.mkdir()
    (second / "hello").write_text("#!/bin/sh\necho hello from bin2\n")
    (second / "hello").chmod(0o755)
    runtime = ProcessRuntime()
    env = {"PATH": f"{first}:{second}"}
    assert runtime._program("hello", env) == str(second / "hello")
    assert runtime._program("./hello", env) is None  # a path: resolved by the child, in its cwd
    assert runtime._program("hello", {"PATH": f"bin1:{second}"}) is None  # relative entry: same
    assert runtime._program("no-such-program", env) is None
    out = tmp_path / "out.txt"
    with out.open("wb") as stdout, (tmp_path / "err.txt").open("wb") as stderr:
        assert runtime.launch(["hello"], env=env, cwd=tmp_path, stdout=stdout,
                              stderr=stderr).wait() == 0
        with pytest.raises(FileNotFoundError):
            runtime.launch(["no-such-program"], env=env, cwd=tmp_path, stdout=stdout,
                           stderr=stderr)
    assert out.read_text() == "hello from bin2\n"


def test_events_taken_when_ctrl_c_arrives_are_handed_over_not_lost() -> None:
    backend = LocalBackend("process")
    first = AttemptEvent("task-1", 1, "finished", 0.0, "local-1", result="succeeded", final=True)
    second = AttemptEvent("task-2", 1, "started", 0.0, "local-2")
    real = backend._out

    class CtrlCOnSecondGet:  # the queue, with Ctrl-C arriving after one event was taken off it
        calls = 0

        def put(self, event: AttemptEvent) -> None:
            real.put(event)

        def get(self, timeout: float | None = None) -> AttemptEvent:
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return real.get(timeout=timeout)

    backend._out = CtrlCOnSecondGet()  # type: ignore[assignment]
    backend._out.put(first)
    with pytest.raises(KeyboardInterrupt):
        backend.events(0.1)
    backend._out.put(second)
    assert backend.events(0.1) == [first, second]
    assert backend.events(0.01) == []
