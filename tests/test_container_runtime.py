"""Tasks as real podman containers: the contract inside, failures, timeouts, Ctrl-C and kill -9."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import shardrun
from shardrun.core.ledger import Ledger
from shardrun.images.engine import Engine

from .fixtures.containers import run_containers
from .helpers import write_job

# Sleeps on the first attempt only, so an interrupted run can be resumed and finish.
SLOW_FIRST_ATTEMPT = ('if [ "$SHARDRUN_ATTEMPT" = 1 ]; then sleep 60; fi; '
                     'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"')
WAIT = 60.0


def lines(tmp_path: Path, n: int) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(n)))


def container_job(tmp_path: Path, image: str, app: dict[str, object] | None = None,
                  name: str = "ctr", **run: object) -> Path:
    return write_job(tmp_path, {
        "job": {"name": name},
        "app": {"image": image, **(app or {})},
        "split": {"input": "big.txt", "per_task": 1},
        "merge": {"output": "result.txt"},
        "run": {"concurrency": 2, "container_options": ["--network", "none"], **run},
    })


def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_entrypoint_runs_per_task_in_containers(tmp_path: Path, podman: Engine, test_image: str,
                                                shardrun_home: Path) -> None:
    lines(tmp_path, 5)
    result = shardrun.run_job(container_job(tmp_path, test_image))  # no command: the ENTRYPOINT
    assert result.ok, result
    assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(5))
    attempts = Ledger(shardrun_home / "ledger.sqlite").attempts(result.run_id)
    assert len(attempts) == 5 and all(a["exit_code"] == 0 for a in attempts)
    assert run_containers(podman, result.run_id) == []  # --rm: nothing left behind


def test_contract_inside_the_container(tmp_path: Path, test_image: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", "c2VjcmV0LWtleQ==")
    monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2-token")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:proxy-pw@127.0.0.1:9")  # podman passes these by default
    lines(tmp_path, 1)
    (tmp_path / "config.json").write_text('{"k": 1}')
    (tmp_path / "ref.db").write_text("reference-data")
    script = ('env > "$OUTPUT_PATH"; echo "PWD_IS=$(pwd)" >> "$OUTPUT_PATH"; '
              'echo "ARG1=$1" >> "$OUTPUT_PATH"; echo "ARG2=$2" >> "$OUTPUT_PATH"; '
              'echo "CONFIG_IS=$(cat "$CONFIG_PATH")" >> "$OUTPUT_PATH"; '
              'echo "FILE_IS=$(cat ref.db)" >> "$OUTPUT_PATH"; '
              'echo "INPUT_IS=$(cat "$INPUT_PATH")" >> "$OUTPUT_PATH"')
    job = container_job(tmp_path, test_image, {
        "command": ["/bin/sh", "-c", script, "sh", "{input}", "two words 'q' $(x)"],
        "config": "config.json", "files": ["ref.db"], "env": {"GREETING": "hi there"},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    seen = dict(line.split("=", 1) for line in (tmp_path / "result.txt").read_text().splitlines())
    assert seen["PWD_IS"] == seen["AZ_BATCH_TASK_WORKING_DIR"]
    assert seen["ARG1"] == seen["INPUT_PATH"]
    assert seen["ARG2"] == "two words 'q' $(x)"  # one argv item, never through a shell
    assert seen["INPUT_IS"] == "line 0"
    assert seen["CONFIG_IS"] == '{"k": 1}'
    assert seen["FILE_IS"] == "reference-data"
    assert seen["GREETING"] == "hi there"
    assert seen["SHARDRUN_TASK_ID"] == seen["AZ_BATCH_TASK_ID"] == "task-00001"
    assert seen["SHARDRUN_ATTEMPT"] == "1"
    for key in ("OUTPUT_PATH", "AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_DIR", "AZ_BATCH_NODE_SHARED_DIR",
                "AZ_BATCH_NODE_ROOT_DIR", "AZ_BATCH_NODE_ID", "AZ_BATCH_POOL_ID"):
        assert seen[key], key
    assert seen["OUTPUT_PATH"].startswith(seen["AZ_BATCH_TASK_WORKING_DIR"] + "/")
    assert "AZURE_STORAGE_KEY" not in seen and "MY_SECRET_TOKEN" not in seen
    assert "HTTPS_PROXY" not in seen and "https_proxy" not in seen
    assert ".venv" not in seen["PATH"]  # the image's PATH, not the client's


def test_folder_inputs_with_hostile_names_are_copied_in(tmp_path: Path, test_image: str) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    names = ["a b.txt", "it's.txt", "$(touch pwned).txt", "-dash.txt", "café.txt"]
    for name in names:
        (folder / name).write_text(f"<{name}>\n")
    job = write_job(tmp_path, {
        "app": {"image": test_image, "command": [
            "/bin/sh", "-c", 'for f in "$INPUT_PATH"/*; do cat "$f"; done > "$OUTPUT_PATH"']},
        "split": {"input": "docs", "method": "files", "per_task": 2},
        "merge": {"output": "all.txt"},
        "run": {"concurrency": 2, "container_options": ["--network", "none"]},
    })
    result = shardrun.run_job(job)
    assert result.ok, result
    merged = (tmp_path / "all.txt").read_text()
    assert sorted(merged.splitlines()) == sorted(f"<{n}>" for n in names)
    assert not (tmp_path / "pwned").exists()


def test_failures_are_retried_and_reported(tmp_path: Path, test_image: str) -> None:
    lines(tmp_path, 1)
    job = container_job(tmp_path, test_image,
                        {"command": ["/bin/sh", "-c", "echo boom-$SHARDRUN_ATTEMPT >&2; exit 3"]},
                        retries=1)
    result = shardrun.run_job(job)
    assert not result.ok
    [failed] = result.failed
    assert failed.attempts == 2
    assert failed.reason == "exit code 3"
    assert "boom-2" in failed.stderr_tail


def test_timeout_stops_the_container(tmp_path: Path, podman: Engine, test_image: str) -> None:
    lines(tmp_path, 1)
    job = container_job(tmp_path, test_image, {"command": ["/bin/sleep", "120"]},
                        timeout="1s", retries=0)
    result = shardrun.run_job(job)
    assert not result.ok
    assert result.failed[0].reason == "timed out after 1s"
    assert run_containers(podman, result.run_id) == []  # the container, not only the client


def _started(home: Path) -> list[str]:
    runs = shardrun.list_runs(home=home)
    return [r["run_id"] for r in runs]


def _interrupt_and_resume(tmp_path: Path, podman: Engine, image: str, home: Path,
                          sig: signal.Signals) -> None:
    lines(tmp_path, 2)  # both tasks start at once, so every resumed attempt is a second one
    name = f"stop-{secrets.token_hex(3)}"
    job = container_job(tmp_path, image, {"command": ["/bin/sh", "-c", SLOW_FIRST_ATTEMPT]},
                        name=name)
    client = subprocess.Popen([sys.executable, "-m", "shardrun", "run", str(job)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        # Running, not only created: a container still being set up when the client is stopped
        # is another case (a kill can find no process to signal yet).
        wait_for(lambda: _started(home) and len(run_containers(podman, _started(home)[0],
                                                               running=True)) == 2,
                 "two running containers")
        run_id = _started(home)[0]
        client.send_signal(sig)
        _, err = client.communicate(timeout=WAIT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if sig == signal.SIGINT:
        assert client.returncode == 130, err
        assert run_containers(podman, run_id) == []  # Ctrl-C stopped the containers themselves
    else:
        assert len(run_containers(podman, run_id)) == 2  # kill -9: the client could not clean up
    result = shardrun.run_job(job)  # resumes: removes what the dead client left, reruns the rest
    assert result.ok and result.resumed and result.run_id == run_id, result
    assert (tmp_path / "result.txt").read_text() == "LINE 0\nLINE 1\n"
    assert run_containers(podman, run_id) == []


def test_ctrl_c_stops_the_containers_and_the_run_resumes(tmp_path: Path, podman: Engine,
                                                         test_image: str, shardrun_home: Path) -> None:
    _interrupt_and_resume(tmp_path, podman, test_image, shardrun_home, signal.SIGINT)


def test_kill_9_leftovers_are_removed_on_resume(tmp_path: Path, podman: Engine, test_image: str,
                                                shardrun_home: Path) -> None:
    _interrupt_and_resume(tmp_path, podman, test_image, shardrun_home, signal.SIGKILL)
