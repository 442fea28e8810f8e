"""The azure-batch backend's plain parts: the task command line (run here by a real /bin/sh), the
container flags, and the advice given for the errors users hit."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shardrun.providers.azure.batch_listing import task_record
from shardrun.providers.azure.batch_monitor import PoolHealth, explain, task_events, task_reason
from shardrun.providers.azure.batch_tasks import (
    NO_OUTPUT_EXIT,
    TaskFiles,
    autoscale_formula,
    command_line,
    container_run_options,
)
from shardrun.providers.azure.settings import BatchSection

HOSTILE = ["it's a \"file\" with $(touch PWNED) and `touch PWNED2`; rm -rf x", "-n", "* ?"]


def files(input_name: str = "in/piece 1.txt") -> TaskFiles:
    return TaskFiles(inputs=(), input_path=input_name, output_path="out/result.txt",
                     output_blob="outputs/task-00001/result.txt", log_blobs={})


def run_like_batch(line: str, wd: Path) -> subprocess.CompletedProcess[str]:
    """Batch splits the command line like a shell, then runs it without one."""
    return subprocess.run(shlex.split(line), cwd=wd, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "AZ_BATCH_TASK_WORKING_DIR": str(wd)})


def test_the_command_line_passes_every_argument_through_unchanged(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "piece 1.txt").write_text("data")
    app = ["sh", "-c", 'printf "%s\\n" "$@" > "$OUTPUT_PATH"; echo "$INPUT_PATH" >> "$OUTPUT_PATH"',
           "app", *HOSTILE, "{input}"]
    proc = run_like_batch(command_line(app, files(), ""), tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "result.txt").read_text().splitlines()
    assert lines == [*HOSTILE, "in/piece 1.txt", str(tmp_path / "in" / "piece 1.txt")]
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


def test_exit_0_without_an_output_fails_the_attempt(tmp_path: Path) -> None:
    proc = run_like_batch(command_line(["true"], files(), ""), tmp_path)
    assert proc.returncode == NO_OUTPUT_EXIT
    assert "wrote nothing at OUTPUT_PATH" in proc.stderr
    info = SimpleNamespace(exit_code=NO_OUTPUT_EXIT, failure_info=None)
    assert task_reason(info) == "exited 0 but wrote nothing at OUTPUT_PATH"


def test_the_apps_exit_code_is_kept(tmp_path: Path) -> None:
    proc = run_like_batch(command_line(["sh", "-c", "exit 7"], files(), ""), tmp_path)
    assert proc.returncode == 7


def test_with_a_mount_the_output_is_copied_only_after_success(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    keep = TaskFiles(inputs=(), input_path=str(tmp_path / "abs-input"), output_path="out/r.txt",
                     output_blob="outputs/t/r.txt", log_blobs={},
                     output_copy=str(mount / "outputs" / "t" / "r.txt"))
    (tmp_path / "abs-input").write_text("x")
    ok = run_like_batch(command_line(["sh", "-c", 'cat "$INPUT_PATH" > "$OUTPUT_PATH"'], keep, ""),
                        tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (mount / "outputs" / "t" / "r.txt").read_text() == "x"
    (mount / "outputs" / "t" / "r.txt").unlink()
    bad = run_like_batch(command_line(["sh", "-c", 'echo partial > "$OUTPUT_PATH"; exit 1'], keep, ""),
                         tmp_path)
    assert bad.returncode == 1 and not (mount / "outputs" / "t" / "r.txt").exists()


def test_container_flags_are_a_list_and_the_mount_adds_one_volume() -> None:
    options = container_run_options(["--memory", "2g"], "mount", "run-1")
    assert options == ("--memory", "2g", "--volume",
                       "$AZ_BATCH_NODE_MOUNTS_DIR/shardrun-run-1:/mnt/shardrun")
    assert container_run_options(["--memory", "2g"], "files", "run-1") == ("--memory", "2g")
    # What Batch receives: one string, split back into exactly these arguments.
    assert shlex.split(shlex.join(options)) == list(options)


def test_autoscale_formula_follows_pending_tasks_with_taskcompletion() -> None:
    settings = BatchSection(account_url="https://a.westeurope.batch.azure.com", autoscale=True,
                            max_nodes=7, task_slots_per_node=4)
    formula = autoscale_formula(settings)
    assert "$TargetLowPriorityNodes = min(7, (max(0, $PendingTasks.GetSample(1)) + 3) / 4);" in formula
    assert "$TargetDedicatedNodes = 0;" in formula
    assert "$NodeDeallocationOption = taskcompletion;" in formula


def test_settings_refuse_a_pool_with_no_nodes_and_a_fast_interval_on_azure() -> None:
    with pytest.raises(ValueError, match="how many nodes"):
        BatchSection(account_url="https://a.westeurope.batch.azure.com")
    with pytest.raises(ValueError, match="5 minutes"):
        BatchSection(account_url="https://a.westeurope.batch.azure.com", autoscale=True,
                     autoscale_interval=60)
    with pytest.raises(ValueError, match="loopback"):
        BatchSection(account_url="http://batch.example.com", dedicated_nodes=1)


class FakeHttpError(Exception):
    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status_code = status
        self.error = SimpleNamespace(code=code, message=message)
        self.model = SimpleNamespace(error_values=[SimpleNamespace(key="RequestId", value="abc")])


def test_quota_errors_say_what_to_do() -> None:
    err = explain(FakeHttpError("ActiveJobAndScheduleQuotaReached", "The quota was reached.\nRequestId:x"),
                  "create job j1")
    text = str(err)
    assert "create job j1" in text and "ActiveJobAndScheduleQuotaReached" in text
    assert "shardrun gc" in text and "RequestId" not in text


def pool(**kw: Any) -> Any:
    base = {"id": "p1", "resize_errors": [], "current_dedicated_nodes": 0, "current_low_priority_nodes": 0}
    return SimpleNamespace(**{**base, **kw})


# What each resize error the emulator (and the service) gives must tell the user to do.
RESIZE_ADVICE = {
    "AccountCoreQuotaReached": ("ask for more dedicated cores", "Spot"),
    "AccountLowPriorityCoreQuotaReached": ("ask for more Spot cores", "dedicated nodes"),
    "AllocationFailed": ("another vm_size or region", "dedicated nodes instead of Spot"),
    "AllocationTimedOut": ("another vm_size or region", "run again later"),
}


@pytest.mark.parametrize("code", sorted(RESIZE_ADVICE))
def test_a_resize_error_with_no_usable_node_stops_the_run_with_advice(code: str) -> None:
    from shardrun.emulator.faults import RESIZE_ERRORS

    health = PoolHealth()
    errors = [SimpleNamespace(code=code, message=RESIZE_ERRORS[code][0])]
    notes, fatal = health.review(pool(resize_errors=errors), None)
    assert fatal is not None and notes == []
    text = str(fatal)
    assert f"pool p1 cannot get any node ({code}: {RESIZE_ERRORS[code][0]}" in text
    assert all(advice in text for advice in RESIZE_ADVICE[code]), text
    assert "deletes its job and pool" in text


def test_a_resize_error_with_usable_nodes_is_said_once_and_the_run_goes_on() -> None:
    health = PoolHealth()
    errors = [SimpleNamespace(code="AccountCoreQuotaReached", message="quota")]
    counts = [SimpleNamespace(unusable=0, start_task_failed=0, preempted=0, total=0),
              SimpleNamespace(unusable=0, start_task_failed=0, preempted=0, total=2)]
    grown = pool(resize_errors=errors, current_low_priority_nodes=2)
    notes, fatal = health.review(grown, counts)
    assert fatal is None
    assert notes == ["pool p1 could not grow (AccountCoreQuotaReached: quota; the Batch account's "
                     + notes[0].split("; the Batch account's ", 1)[1]]
    assert "the tasks run on the 2 node(s) it has" in notes[0]
    assert health.review(grown, counts) == ([], None)
    # nodes that are all unusable are no nodes
    broken = [SimpleNamespace(unusable=0, start_task_failed=0, preempted=0, total=0),
              SimpleNamespace(unusable=2, start_task_failed=0, preempted=0, total=2)]
    _, fatal = PoolHealth().review(grown, broken)
    assert fatal is not None and "cannot get any node" in str(fatal)


def unusable_node(node_id: str, code: str = "ContainerImagePullFailed") -> Any:
    detail = [SimpleNamespace(name="ContainerImage", value="127.0.0.1:5000/app:1"),
              SimpleNamespace(name="Message", value="manifest unknown")]
    return SimpleNamespace(id=node_id, errors=[SimpleNamespace(
        code=code, message="A container image of the pool could not be pulled.", error_details=detail)])


def test_an_image_pull_failure_on_every_node_stops_the_run_at_once() -> None:
    counts = [SimpleNamespace(unusable=2, start_task_failed=0, preempted=0, total=2),
              SimpleNamespace(unusable=0, start_task_failed=0, preempted=0, total=0)]
    nodes = [unusable_node("n1"), unusable_node("n2")]
    _, fatal = PoolHealth().review(pool(current_dedicated_nodes=2), counts, now=0.0,
                                   unusable_nodes=nodes)
    assert fatal is not None  # at once, not after dead_after
    text = str(fatal)
    assert "no node of pool p1 could get the app's image (ContainerImagePullFailed" in text
    assert "ContainerImage: 127.0.0.1:5000/app:1; Message: manifest unknown" in text
    assert "shardrun image push" in text and "password_secret" in text


def test_an_image_pull_failure_on_some_nodes_is_said_once() -> None:
    health = PoolHealth()
    counts = [SimpleNamespace(unusable=1, start_task_failed=0, preempted=0, total=3),
              SimpleNamespace(unusable=0, start_task_failed=0, preempted=0, total=0)]
    notes, fatal = health.review(pool(current_dedicated_nodes=3), counts,
                                 unusable_nodes=[unusable_node("n1")])
    assert fatal is None
    assert any("1 node(s) of pool p1 could not get the app's image" in n for n in notes)
    again, _ = health.review(pool(current_dedicated_nodes=3), counts,
                             unusable_nodes=[unusable_node("n1")])
    assert not any("image" in n for n in again)


def test_unusable_nodes_and_preemptions_are_reported() -> None:
    health = PoolHealth()
    counts = [SimpleNamespace(unusable=1, start_task_failed=0, preempted=0),
              SimpleNamespace(unusable=0, start_task_failed=0, preempted=2)]
    notes, fatal = health.review(pool(current_dedicated_nodes=1), counts)
    assert fatal is None
    assert any("unusable" in n for n in notes) and any("2 Spot node(s) preempted" in n for n in notes)


def test_an_image_pull_failure_names_the_image_and_the_fix() -> None:
    info = SimpleNamespace(exit_code=None, failure_info=SimpleNamespace(
        code="ContainerPullImageFailed", message="Error response: manifest unknown"))
    reason = task_reason(info, "myacr.azurecr.io/app:1")
    assert "could not pull the image myacr.azurecr.io/app:1" in reason and "image push" in reason


def test_batch_retries_become_earlier_failed_attempts() -> None:
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    task = task_record({  # as the service's JSON gives it
        "id": "task-00003", "state": "completed", "stateTransitionTime": "2026-01-01T00:00:09.0000000Z",
        "nodeInfo": {"nodeId": "node-1"},
        "executionInfo": {"retryCount": 2, "startTime": "2026-01-01T00:00:05Z",
                          "endTime": "2026-01-01T00:00:09.0000000Z", "lastRetryTime": "2026-01-01T00:00:00Z",
                          "exitCode": 0, "result": "success"}})
    events = task_events(task, first_attempt=4, now=0.0)
    finished = [(e.attempt, e.result, e.final) for e in events if e.kind == "finished"]
    assert finished == [(4, "failed", False), (5, "failed", False), (6, "succeeded", True)]
    assert events[-1].worker == "node-1" and events[-1].time == (t0 + dt.timedelta(seconds=9)).timestamp()


def test_an_error_about_a_secret_property_never_quotes_its_value() -> None:
    err = FakeHttpError("InvalidRequestBody", "The specified Request Body is not syntactically valid.",
                        status=400)
    err.model = SimpleNamespace(error_values=[
        SimpleNamespace(key="PropertyName",
                        value="virtualMachineConfiguration.containerConfiguration.containerRegistries[0].password"),
        SimpleNamespace(key="Reason", value="'hunter2-registry-password' is too long")])
    text = str(explain(err, "create pool p1"))
    assert "containerRegistries[0].password" in text and "hunter2" not in text
    err.model = SimpleNamespace(error_values=[
        SimpleNamespace(key="PropertyName", value="vmSize"),
        SimpleNamespace(key="Reason", value="'tiny' is not a VM size")])
    assert "'tiny' is not a VM size" in str(explain(err, "create pool p1"))
