"""Asking a job to end with its tasks (allTasksCompleteMode = terminatejob) when the request was
applied but its answer lost: the retry finds the job completed, which is what was asked, not an
error that stops the run and leaves its pool and job behind (bench/faults_batch.py found it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm

from shardrun.cli import main
from shardrun.emulator import Emulator
from shardrun.providers.azure.batch_account import end_job_with_its_tasks
from shardrun.providers.azure.batch_monitor import BatchError

from .emulator.conftest import make_job, make_pool, wait_for
from .fixtures.azurite import Azurite
from .test_batch_backend import batch_client, batch_job, emulator, ledger, left_in, secrets_env  # noqa: F401


def test_a_completed_job_is_what_ending_it_with_its_tasks_asked(emulator: Emulator) -> None:  # noqa: F811
    client = batch_client(emulator)
    make_pool(client, nodes=0)
    make_job(client)
    end_job_with_its_tasks(client, "job1")  # no task: the job completes at once
    assert wait_for(lambda: str(client.get_job("job1").state).lower().endswith("completed"))
    end_job_with_its_tasks(client, "job1")  # as a retry after a lost answer: no error
    with pytest.raises(BatchError, match="JobNotFound"):
        end_job_with_its_tasks(client, "no-such-job")
    assert client.get_job("job1").all_tasks_complete_mode == bm.BatchAllTasksCompleteMode.TERMINATE_JOB


def test_an_error_that_stops_the_client_says_what_is_left_and_how_to_end_it(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(client: Any, job_id: str) -> None:
        raise BatchError(f"Azure Batch could not update job {job_id}: a test's failure")

    monkeypatch.setattr("shardrun.providers.azure.batch.end_job_with_its_tasks", broken)
    job = batch_job(tmp_path, emulator, azurite, lines=8, per_task=4)
    assert main(["run", str(job)]) == 3
    err = capsys.readouterr().err
    run_id = ledger(shardrun_home).runs()[0].run_id
    note = next(line for line in err.splitlines() if "are still there" in line)
    assert f"Batch job {run_id} and Batch pool {run_id}-pool of run {run_id}" in note
    assert f"shardrun cleanup {run_id} --force" in note
    assert left_in(batch_client(emulator)) == ([f"{run_id}-pool"], [run_id])
    monkeypatch.setattr("shardrun.providers.azure.batch.end_job_with_its_tasks", end_job_with_its_tasks)
    assert main(["cleanup", run_id, "--force"]) == 0, capsys.readouterr().err
    assert left_in(batch_client(emulator)) == ([], [])
