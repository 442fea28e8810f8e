"""The local backend reuses a worker's task folder after a clean success (one rename per task):
what an attempt leaves behind, or prints, must never reach the next attempt."""

from __future__ import annotations

from pathlib import Path

from shardrun.core.compute import AttemptEvent, RunContext, TaskSpec
from shardrun.core.layout import input_key, log_key, output_key
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.store import LocalStore

RUN = "slots-261130-abcdef"
# Each task's input says what it does. `check` writes what its folders held when it started.
SCRIPT = r"""
w=$(ls -A); t=$(ls -A "$AZ_BATCH_TASK_DIR" | tr '\n' ' ')
case "$(cat "$1")" in
  loud*) cat "$1"; cp "$1" "$2" ;;
  quiet) cp "$1" "$2" ;;
  messy) echo junk > junk.txt; echo junk > "$AZ_BATCH_TASK_DIR/extra.txt"; cp "$1" "$2" ;;
  fail) echo bad >&2; exit 3 ;;
  check) printf 'wd=[%s] task=[%s]\n' "$w" "$t" > "$2" ;;
esac
"""
PLAN = ["loud one", "quiet", "loud two", "check", "messy", "check", "fail", "check"]


def run_tasks(tmp_path: Path) -> tuple[LocalStore, list[AttemptEvent], Path]:
    store = LocalStore(tmp_path / "store")
    tasks = []
    for i, what in enumerate(PLAN, 1):
        task = f"task-{i:05d}"
        store.put_bytes(input_key(RUN, task, "in.txt"), what.encode())
        tasks.append(TaskSpec(task, input_key(RUN, task, "in.txt"), output_key(RUN, task, "out.txt"), 1))
    backend = LocalBackend("process")
    scratch = tmp_path / "scratch"
    backend.start(RunContext(
        run_id=RUN, command=["sh", "-c", SCRIPT, "sh", "{input}", "{output}"], store=store,
        scratch=scratch, env={}, config_key=None, file_keys=(), retries=0, timeout=None,
        concurrency=1, stdout_output=False, resources=(), resources_ever=(),
        on_resource=lambda *_: None))
    backend.submit(tasks)
    events: list[AttemptEvent] = []
    try:
        while sum(e.kind == "finished" and e.final for e in events) < len(tasks):
            events += backend.events(1.0)
    finally:
        backend.close()
    return store, events, scratch / "tasks"


def test_a_reused_folder_is_clean_and_logs_stay_with_their_attempt(tmp_path: Path) -> None:
    store, events, tasks_dir = run_tasks(tmp_path)
    results = {e.task_id: e.result for e in events if e.kind == "finished"}
    assert results == {f"task-{i:05d}": "failed" if what == "fail" else "succeeded"
                       for i, what in enumerate(PLAN, 1)}

    def log(task: str, stream: str) -> bytes | None:
        try:
            return store.get_bytes(log_key(RUN, task, 1, stream))
        except FileNotFoundError:
            return None

    # Each attempt's stdout is its own, though the worker kept one open file for the quiet ones.
    assert log("task-00001", "stdout") == b"loud one"
    assert log("task-00002", "stdout") is None  # an empty log is not stored
    assert log("task-00003", "stdout") == b"loud two"
    assert log("task-00007", "stderr") == b"bad\n"
    # Each `check` started in an empty working folder, with nothing but its logs beside it: not
    # the messy task's files, not the failed task's log.
    clean = b"wd=[] task=[stderr.txt stdout.txt wd ]\n"
    for task in ("task-00004", "task-00006", "task-00008"):
        assert store.get_bytes(output_key(RUN, task, "out.txt")) == clean, task
    # A failed attempt's folder is kept for inspection; every succeeded one is gone after close.
    assert sorted(p.name for p in tasks_dir.iterdir()) == ["task-00007.1"]
    assert (tasks_dir / "task-00007.1" / "wd").is_dir()


def test_a_folder_left_by_a_dead_client_is_replaced(tmp_path: Path) -> None:
    # A client killed before it recorded task-00002's attempt 1 left its folder, full.
    stale = tmp_path / "scratch" / "tasks" / "task-00002.1" / "wd"
    stale.mkdir(parents=True)
    (stale / "half-written.txt").write_text("old")
    store, _events, tasks_dir = run_tasks(tmp_path)
    assert store.get_bytes(output_key(RUN, "task-00004", "out.txt")) == (
        b"wd=[] task=[stderr.txt stdout.txt wd ]\n")
    assert not (tasks_dir / "task-00002.1").exists()
