"""Tasks run on simulated nodes like on a Linux node: environment, directories, retries, wall clock,
states and executionInfo, job completion, counts, listing, and task files."""

from __future__ import annotations

import sys
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm

from shardrun.emulator import Emulator

from .conftest import error_of, make_job, make_pool, wait_for, wait_task_done

PY = sys.executable


def add(client: BatchClient, task_id: str, command: str, job_id: str = "job1", **extra: object) -> None:
    client.create_task(job_id, bm.BatchTaskCreateOptions(id=task_id, command_line=command, **extra))


def test_environment_and_directory_layout(client: BatchClient, emulator: Emulator) -> None:
    make_pool(client)
    make_job(client, common_environment_settings=[bm.EnvironmentSetting(name="FROM_JOB", value="j")])
    script = (
        "import os,json; print(json.dumps({k: v for k, v in os.environ.items() "
        "if k.startswith(('AZ_BATCH_', 'FROM_', 'MINE'))})); print(os.getcwd())"
    )
    add(
        client,
        "env",
        f'{PY} -c "{script}"',
        environment_settings=[bm.EnvironmentSetting(name="MINE", value="t")],
    )
    task = wait_task_done(client, "job1", "env")
    assert task.execution_info.result == "success" and task.execution_info.exit_code == 0
    import json

    lines = b"".join(client.download_task_file("job1", "env", "stdout.txt")).decode().splitlines()
    env, cwd = json.loads(lines[0]), lines[1]
    root = Path(env["AZ_BATCH_NODE_ROOT_DIR"])
    assert env["AZ_BATCH_JOB_ID"] == "job1" and env["AZ_BATCH_TASK_ID"] == "env"
    assert env["AZ_BATCH_POOL_ID"] == "pool1" and env["AZ_BATCH_NODE_ID"] == task.node_info.node_id
    assert env["AZ_BATCH_ACCOUNT_NAME"] == emulator.config.account_name
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == str(root / "shared")
    assert env["AZ_BATCH_NODE_MOUNTS_DIR"] == str(root / "fsmounts")
    assert env["AZ_BATCH_TASK_DIR"] == str(root / "workitems" / "job1" / "job-1" / "env")
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == env["AZ_BATCH_TASK_DIR"] + "/wd" == cwd
    assert env["FROM_JOB"] == "j" and env["MINE"] == "t"
    assert task.node_info.task_root_directory == "workitems/job1/job-1/env"
    names = {f.name for f in client.list_task_files("job1", "env")}
    assert {"stdout.txt", "stderr.txt", "wd"} <= names


def test_command_line_does_not_run_under_a_shell(client: BatchClient) -> None:
    make_pool(client)
    make_job(client)
    add(client, "noshell", "/bin/echo $HOME 'two words'")
    wait_task_done(client, "job1", "noshell")
    assert b"".join(client.download_task_file("job1", "noshell", "stdout.txt")) == b"$HOME two words\n"


def test_retries_then_failure(client: BatchClient) -> None:
    make_pool(client)
    make_job(client)
    add(
        client,
        "fails",
        "/bin/sh -c 'echo attempt >&2; exit 3'",
        constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
    )
    task = wait_task_done(client, "job1", "fails")
    info = task.execution_info
    assert (info.result, info.exit_code, info.retry_count) == ("failure", 3, 2)
    assert info.failure_info.code == "FailureExitCode" and info.failure_info.category == "usererror"
    assert info.last_retry_time is not None and info.end_time >= info.start_time
    assert task.previous_state == "running"


def test_retry_that_succeeds(client: BatchClient, tmp_path: Path) -> None:
    make_pool(client)
    make_job(client, constraints=bm.BatchJobConstraints(max_task_retry_count=1))  # the task's default
    marker = tmp_path / "seen"
    add(client, "flaky", f"/bin/sh -c 'test -e {marker} || {{ touch {marker}; exit 1; }}'")
    info = wait_task_done(client, "job1", "flaky").execution_info
    assert (info.result, info.exit_code, info.retry_count) == ("success", 0, 1)


def test_start_failure_is_not_retried(client: BatchClient) -> None:
    make_pool(client)
    make_job(client)
    add(client, "missing", "/no/such/program", constraints=bm.BatchTaskConstraints(max_task_retry_count=3))
    info = wait_task_done(client, "job1", "missing").execution_info
    assert info.result == "failure" and info.retry_count == 0 and info.exit_code is None
    assert info.failure_info.code == "CommandProgramNotFound"


def test_max_wall_clock_time(client: BatchClient) -> None:
    make_pool(client)
    make_job(client)
    add(
        client,
        "slow",
        "/bin/sleep 60",
        constraints=bm.BatchTaskConstraints(max_wall_clock_time="PT1S", max_task_retry_count=2),
    )
    info = wait_task_done(client, "job1", "slow", timeout=20).execution_info
    assert info.result == "failure" and info.retry_count == 0
    assert info.failure_info.code == "MaxWallClockTimeExceeded"


def test_terminate_task_and_job(client: BatchClient) -> None:
    make_pool(client)
    make_job(client)
    add(client, "long", "/bin/sleep 60")
    wait_for(lambda: client.get_task("job1", "long").state == "running", what="task running")
    client.terminate_task("job1", "long")
    info = wait_task_done(client, "job1", "long").execution_info
    assert info.result == "failure" and info.failure_info.code == "TaskEnded"
    assert error_of(lambda: client.terminate_task("job1", "long")).error.code == "TaskCompleted"
    # azure-batch 15.1 cannot send a terminate without options (it sends no content type), and does not
    # export BatchJobTerminateOptions, so the options go as the JSON they serialise to.
    client.begin_terminate_job("job1", {"terminateReason": "stopped by test"}, polling_interval=0.1).result()
    job = client.get_job("job1")
    assert job.state == "completed" and job.execution_info.termination_reason == "stopped by test"
    error = error_of(lambda: add(client, "late", "/bin/true"))
    assert error.status_code == 409 and error.error.code == "JobCompleted"


def test_all_tasks_complete_terminates_the_job(client: BatchClient) -> None:
    make_pool(client, slots=4)
    make_job(client)
    group = [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(5)]
    client.create_task_collection("job1", bm.BatchTaskGroup(task_values=group))
    wait_for(lambda: client.get_job_task_counts("job1").task_counts.completed == 5, what="5 tasks done")
    assert client.get_job("job1").state == "active"  # noaction: the job stays open
    client.update_job("job1", bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    job = wait_for(lambda: (j := client.get_job("job1")).state == "completed" and j, what="job completed")
    assert job.execution_info.termination_reason == "AllTasksComplete" and job.execution_info.end_time


def test_empty_job_created_with_terminatejob_completes_at_once(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    make_job(client, all_tasks_complete_mode="terminatejob")
    wait_for(lambda: client.get_job("job1").state == "completed", what="empty job completed")


def test_task_counts_list_filter_select_and_paging(client: BatchClient) -> None:
    make_pool(client, slots=4)
    make_job(client)
    group = [bm.BatchTaskCreateOptions(id=f"ok{i}", command_line="/bin/true") for i in range(5)]
    group += [bm.BatchTaskCreateOptions(id=f"bad{i}", command_line="/bin/false") for i in range(2)]
    client.create_task_collection("job1", bm.BatchTaskGroup(task_values=group))
    counts = wait_for(lambda: (c := client.get_job_task_counts("job1")).task_counts.completed == 7 and c)
    assert (counts.task_counts.succeeded, counts.task_counts.failed, counts.task_slot_counts.completed) == (
        5,
        2,
        7,
    )
    # maxresults=2 forces four pages; the SDK follows odata.nextLink with the filter kept.
    done = list(
        client.list_tasks(
            "job1", max_results=2, filter="state eq 'completed'", select=["id", "state", "executionInfo"]
        )
    )
    assert sorted(t.id for t in done) == sorted(t.id for t in group)
    assert all(t.url is None and t.execution_info.result for t in done)  # $select dropped the rest
    failed = client.list_tasks("job1", filter="executionInfo/result eq 'failure'")
    assert sorted(t.id for t in failed) == ["bad0", "bad1"]
    assert [
        t.id for t in client.list_tasks("job1", filter="startswith(id, 'ok') and id ne 'ok0'", max_results=1)
    ] == ["ok1", "ok2", "ok3", "ok4"]


def test_task_files(client: BatchClient) -> None:
    make_pool(client)
    make_job(client)
    add(client, "files", "/bin/sh -c 'echo out; echo err >&2; mkdir -p sub; echo data > sub/f.txt'")
    wait_task_done(client, "job1", "files")
    assert b"".join(client.download_task_file("job1", "files", "stderr.txt")) == b"err\n"
    assert b"".join(client.download_task_file("job1", "files", "wd/sub/f.txt")) == b"data\n"
    names = {f.name: f for f in client.list_task_files("job1", "files", recursive=True)}
    assert names["wd/sub/f.txt"].properties.content_length == 5 and names["wd/sub"].is_directory
    props = client.get_task_file_properties("job1", "files", "stdout.txt")
    assert props is not None
    error = error_of(lambda: b"".join(client.download_task_file("job1", "files", "nothere.txt")))
    assert error.status_code == 404


def test_job_priority_and_max_parallel_tasks(client: BatchClient) -> None:
    make_pool(client, slots=4)
    make_job(client, max_parallel_tasks=1)
    for i in range(3):
        add(client, f"p{i}", "/bin/sleep 0.3")
    seen = set()

    def all_done() -> bool:
        counts = client.get_job_task_counts("job1").task_counts
        seen.add(counts.running)
        return counts.completed == 3

    wait_for(all_done, what="three tasks")
    assert max(seen) == 1


def test_task_dependencies(client: BatchClient) -> None:
    make_pool(client, slots=4)
    make_job(client, uses_task_dependencies=True)
    add(client, "second", "/bin/true", depends_on=bm.BatchTaskDependencies(task_ids=["first"]))
    add(client, "first", "/bin/sleep 0.5")
    second = wait_task_done(client, "job1", "second")
    first = client.get_task("job1", "first")
    assert second.execution_info.start_time >= first.execution_info.end_time
    make_job(client, "nodeps")
    error = error_of(
        lambda: add(
            client, "x", "/bin/true", job_id="nodeps", depends_on=bm.BatchTaskDependencies(task_ids=["y"])
        )
    )
    assert error.error.code == "TaskDependenciesNotSpecifiedOnJob"


def test_nodes_list_get_and_removal(client: BatchClient) -> None:
    make_pool(client, nodes=2)
    nodes = wait_for(
        lambda: (n := list(client.list_nodes("pool1"))) and all(x.state == "idle" for x in n) and n,
        what="two idle nodes",
    )
    assert len(nodes) == 2 and all(n.is_dedicated for n in nodes)
    node = client.get_node("pool1", nodes[0].id)
    assert node.vm_size == "standard_d2s_v3" and node.node_agent_info.version
    client.begin_remove_nodes(
        "pool1", bm.BatchNodeRemoveOptions(node_ids=[nodes[0].id]), polling_interval=0.1
    ).result()
    assert [n.id for n in client.list_nodes("pool1")] == [nodes[1].id]
    pool = client.get_pool("pool1")
    assert (pool.target_dedicated_nodes, pool.current_dedicated_nodes, pool.allocation_state) == (
        1,
        1,
        "steady",
    )
    assert error_of(lambda: client.get_node("pool1", nodes[0].id)).error.code == "NodeNotFound"


def test_resize_pool_and_delete(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    client.begin_resize_pool(
        "pool1", bm.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=0.1
    ).result()
    assert client.get_pool("pool1").current_dedicated_nodes == 3
    wait_for(lambda: sum(n.state == "idle" for n in client.list_nodes("pool1")) == 3, what="3 idle nodes")
    client.begin_delete_pool("pool1", polling_interval=0.1).result()
    assert error_of(lambda: client.get_pool("pool1")).error.code == "PoolNotFound"
