"""[merge] where = "cluster" end to end: the real SDKs against the Batch emulator and Azurite. The
merge task runs on an emulated node, the client downloads one blob."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shardrun.cli import main
from shardrun.core.states import RunState
from shardrun.emulator import Emulator

from .fixtures.azurite import DEV_KEY, Azurite
from .fixtures.emulator import start_emulator
from .helpers import toml_value, write_job
from .test_batch_backend import batch_client, batch_job, emulator, ledger, left_in, secrets_env

__all__ = ["emulator", "secrets_env"]  # fixtures used by name

# JSON Lines out of every line: {"n": <line>} (a sh app, so it runs on any node).
JSONL_APP = ["sh", "-c", 'while IFS= read -r l; do printf \'{"n": "%s"}\\n\\n\' "$l"; done '
             '< "$INPUT_PATH" > "$OUTPUT_PATH"']


def cluster_job(folder: Path, emu: Emulator, azurite: Azurite, merge: dict[str, Any],
                **extra: Any) -> Path:
    job = batch_job(folder, emu, azurite, app=JSONL_APP, **extra)
    return _set_merge(job, job.read_text(), [f"{k} = {toml_value(v)}" for k, v in merge.items()])


def _set_merge(job: Path, text: str, lines: list[str]) -> Path:
    head, _, rest = text.partition("[merge]\n")
    rest = rest.split("\n[", 1)
    job.write_text(head + "[merge]\n" + "\n".join(lines) + "\n" + ("\n[" + rest[1] if len(rest) > 1 else ""))
    return job


def local_twin(folder: Path, merge: dict[str, Any]) -> bytes:
    """The same job on the local backend: its merged result."""
    (folder / "big.txt").write_text("".join(f"line {i}\n" for i in range(40)))
    job = write_job(folder, {
        "app": {"command": JSONL_APP},
        "split": {"input": "big.txt", "method": "lines", "per_task": 4},
        "merge": {**merge, "output": "local.out"},
    })
    assert main(["run", "-q", str(job)]) == 0
    return (folder / "local.out").read_bytes()


@pytest.mark.parametrize("method", ["jsonl", "concat"])
def test_cluster_merge_gives_the_local_result_and_downloads_one_blob(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str], method: str,
) -> None:
    job = cluster_job(tmp_path, emulator, azurite,
                      {"method": method, "output": "result.out", "where": "cluster"})
    code, err = main(["run", str(job)]), capsys.readouterr().err
    assert code == 0, err
    run = ledger(shardrun_home).runs()[0]
    assert "and the merge task that follows them" in err  # the user hears of it
    assert f"waiting for the merge task of Batch job {run.run_id}" in err
    assert run.status == RunState.SUCCEEDED
    local = tmp_path / "local"
    local.mkdir()
    assert (tmp_path / "result.out").read_bytes() == local_twin(local, {"method": method})
    assert left_in(batch_client(emulator)) == ([], [])  # the merge's job and the pool are gone
    assert not [p for p in tmp_path.iterdir() if "shardrun-part" in p.name]


def test_a_failed_merge_task_is_merge_failed_with_its_stderr_then_merge_fixes_it(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "result.out").write_bytes(b"previous")
    job = cluster_job(tmp_path, emulator, azurite, {
        "command": ["sh", "-c", "echo 'recombiner broke' >&2; exit 4"], "output": "result.out",
        "where": "cluster"})
    assert main(["run", str(job)]) != 0
    err = capsys.readouterr().err
    run = ledger(shardrun_home).runs()[0]
    assert run.status == RunState.MERGE_FAILED
    assert "recombiner broke" in (run.message or "") and "recombiner broke" in err
    assert (tmp_path / "result.out").read_bytes() == b"previous"  # nothing half-written
    assert left_in(batch_client(emulator)) == ([], [])
    # The job file now merges with a command that works: `shardrun merge` runs a new merge task.
    _set_merge(job, job.read_text(), ['command = ["sh", "-c", "cat merge-in/* | tr a-z A-Z"]',
                                      'output = "result.out"', 'where = "cluster"'])
    code, err = main(["merge", run.run_id]), capsys.readouterr().err
    assert code == 0, err
    assert "merge task submitted to Batch job" in err
    assert ledger(shardrun_home).get_run(run.run_id).status == RunState.SUCCEEDED
    expected = "".join(f'{{"N": "LINE {i}"}}\n\n' for i in range(40))
    assert (tmp_path / "result.out").read_text() == expected
    assert left_in(batch_client(emulator)) == ([], [])


def test_allow_failures_merges_what_succeeded_and_without_it_nothing_is_merged(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = ["sh", "-c", 'if grep -q "line 7" "$INPUT_PATH"; then exit 3; fi; '
           'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"']
    job = batch_job(tmp_path, emulator, azurite, lines=12, per_task=2, app=app,
                    run={"retries": 0, "allow_failures": True})
    _set_merge(job, job.read_text(), ['method = "concat"', 'output = "result.out"',
                                      'where = "cluster"'])
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    kept = [i for i in range(12) if i not in (6, 7)]
    assert (tmp_path / "result.out").read_text() == "".join(f"LINE {i}\n" for i in kept)
    assert left_in(batch_client(emulator)) == ([], [])
    # Without allow_failures the merge task stays blocked; the run fails and its job is deleted.
    job.write_text(job.read_text().replace("allow_failures = true", "allow_failures = false"))
    (tmp_path / "result.out").unlink()
    assert main(["run", "--new", str(job)]) == 1
    assert not (tmp_path / "result.out").exists()
    assert ledger(shardrun_home).runs()[0].status == RunState.FAILED
    assert left_in(batch_client(emulator)) == ([], [])


def test_a_client_killed_while_the_merge_task_runs_collects_its_result_on_the_next_run(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hold = tmp_path / "hold"  # the merge task waits while it exists: it cannot end before the kill
    hold.touch()
    job = cluster_job(tmp_path, emulator, azurite, {
        "command": ["sh", "-c", f"while [ -e '{hold}' ]; do sleep 0.05; done; cat merge-in/*"],
        "output": "result.out", "where": "cluster"})
    client = subprocess.Popen([sys.executable, "-m", "shardrun", "run", "-q", str(job)],
                              env=os.environ.copy(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline and run_id is None and client.poll() is None:
            runs = ledger(shardrun_home).runs() if (shardrun_home / "ledger.sqlite").exists() else []
            if runs and runs[0].status == RunState.MERGING:
                run_id = runs[0].run_id
            time.sleep(0.1)
        client.send_signal(signal.SIGKILL)
        client.wait()
    finally:
        hold.unlink()
    assert run_id is not None
    assert not (tmp_path / "result.out").exists()
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.out").read_text() == "".join(
        f'{{"n": "line {i}"}}\n\n' for i in range(40))
    jobs = [r for k, r in ledger(shardrun_home).resources(run_id, live_only=False) if k == "batch-job"]
    assert jobs == [run_id]  # the merge task of the run's job, re-attached: no merge job of its own
    assert left_in(batch_client(emulator)) == ([], [])


def test_in_simulated_mode_the_merge_task_completes_and_leaves_its_blob(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = start_emulator(simulate_seconds=(0.005, 0.02), simulate_seed=1)
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        job = cluster_job(tmp_path, emu, azurite, {"method": "concat", "output": "result.out",
                                                   "where": "cluster"},
                          lines=600, per_task=1, batch={"task_slots_per_node": 50})
        assert main(["run", str(job)]) == 0, capsys.readouterr().err
        run_id = ledger(shardrun_home).runs()[0].run_id
        assert ledger(shardrun_home).counts(run_id)["succeeded"] == 600
        # A simulated task writes one line naming its job, task and resource files.
        assert (tmp_path / "result.out").read_text() == (
            f"{run_id}/merge: /devstoreaccount1/{run_id}/app/shardrun-merge.sh "
            f"/devstoreaccount1/{run_id}/outputs/\n")
    finally:
        emu.stop()


def test_a_run_submitted_with_the_old_task_ids_resumes_and_merges_in_a_job_of_its_own(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shardrun.providers.azure import batch, batch_merge

    # The client before numbered ids: Batch task ids were the ledger's, the job had no metadata
    # naming them and no task dependencies. It is stopped (Ctrl-C detaches) while tasks run.
    real_build_job = batch.build_job

    def old_job(*args: Any) -> Any:
        job = real_build_job(*args)
        job.uses_task_dependencies = None
        job.metadata = job.metadata[:1]
        return job

    polls = []

    def stop_on_second_poll(self: Any) -> int:
        polls.append(1)
        if len(polls) == 2:
            raise KeyboardInterrupt
        return real_poll(self)

    real_poll = batch.AzureBatchBackend.poll
    with monkeypatch.context() as patch:
        patch.setattr(batch, "build_job", old_job)
        patch.setattr(batch_merge, "batch_task_id", lambda ledger_id, numbers: ledger_id)
        patch.setattr(batch.AzureBatchBackend, "poll", stop_on_second_poll)
        job = batch_job(tmp_path, emulator, azurite, app=JSONL_APP)
        assert main(["run", str(job)]) != 0
    run_id = ledger(shardrun_home).runs()[0].run_id
    ids = {t.id for t in batch_client(emulator).list_tasks(run_id)}
    assert "task-00001" in ids
    # The new client re-attaches to that job with its ids, then merges on the cluster.
    _set_merge(job, job.read_text(), ['method = "jsonl"', 'output = "result.out"',
                                      'where = "cluster"'])
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.out").read_text() == "".join(f'{{"n": "line {i}"}}\n' for i in range(40))
    jobs = [r for k, r in ledger(shardrun_home).resources(run_id, live_only=False) if k == "batch-job"]
    assert jobs == [run_id, f"{run_id}-retry1"]  # the merge ran in a job of its own
    assert left_in(batch_client(emulator)) == ([], [])


def test_retry_goes_to_a_new_job_whose_merge_task_merges_every_output(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path, shardrun_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    poison = tmp_path / "poison"
    poison.write_text("")
    app = ["sh", "-c", f'if [ -e {poison} ] && grep -q "line 7" "$INPUT_PATH"; then exit 3; fi; '
           'tr a-z A-Z < "$INPUT_PATH" > "$OUTPUT_PATH"']
    job = batch_job(tmp_path, emulator, azurite, lines=12, per_task=2, app=app, run={"retries": 0})
    _set_merge(job, job.read_text(), ['method = "concat"', 'output = "result.out"',
                                      'where = "cluster"'])
    assert main(["run", str(job)]) == 1
    run_id = ledger(shardrun_home).runs()[0].run_id
    assert not (tmp_path / "result.out").exists()
    poison.unlink()
    assert main(["retry", run_id, "--failed"]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.out").read_text() == "".join(f"LINE {i}\n" for i in range(12))
    jobs = [r for k, r in ledger(shardrun_home).resources(run_id, live_only=False) if k == "batch-job"]
    assert jobs == [run_id, f"{run_id}-retry1"]  # the merge task ran in the retry's job
    assert left_in(batch_client(emulator)) == ([], [])
