"""Task dependencies and exit conditions: taskIds and taskIdRanges, dependencyAction (satisfy/block,
and its defaults), jobAction with onTaskFailure, and the errors the service gives."""

from __future__ import annotations

from azure.batch import BatchClient
from azure.batch import models as bm

from .conftest import error_of, make_job, make_pool, wait_for, wait_task_done


def add(client: BatchClient, task_id: str, command: str, job_id: str = "job1", **extra: object) -> None:
    client.create_task(job_id, bm.BatchTaskCreateOptions(id=task_id, command_line=command, **extra))


def after(*ids: str, ranges: tuple[tuple[int, int], ...] = ()) -> bm.BatchTaskDependencies:
    return bm.BatchTaskDependencies(
        task_ids=list(ids) or None,
        task_id_ranges=[bm.BatchTaskIdRange(start=a, end=b) for a, b in ranges] or None,
    )


def on(dependency: str | None = None, job: str | None = None) -> bm.ExitOptions:
    return bm.ExitOptions(dependency_action=dependency, job_action=job)


def exits(*codes: tuple[int, bm.ExitOptions], **others: bm.ExitOptions) -> bm.ExitConditions:
    return bm.ExitConditions(
        exit_codes=[bm.ExitCodeMapping(code=c, exit_options=o) for c, o in codes] or None, **others
    )


def test_dependency_actions_and_their_defaults(client: BatchClient) -> None:
    make_pool(client, nodes=1, slots=4)
    make_job(client, uses_task_dependencies=True)
    cases = {
        # task: (command, exitConditions, should its dependent run?)
        "fails": ("/bin/sh -c 'exit 2'", None, False),  # default: block for non-zero
        "ok": ("/bin/true", None, True),  # default: satisfy for 0
        "fails-mapped": ("/bin/sh -c 'exit 3'", exits((3, on("satisfy"))), True),
        "ok-blocked": ("/bin/true", exits((0, on("block"))), False),  # 0 must be listed to change it
        "fails-default": ("/bin/sh -c 'exit 4'", exits((3, on("block")), default=on("satisfy")), True),
        "in-range": (
            "/bin/sh -c 'exit 7'",
            bm.ExitConditions(
                exit_code_ranges=[bm.ExitCodeRangeMapping(start=5, end=9, exit_options=on("satisfy"))]
            ),
            True,
        ),
        "cannot-start": ("/no/such/program", exits(pre_processing_error=on("satisfy")), True),
        "cannot-start-default": ("/no/such/program", exits(default=on("satisfy")), True),
    }
    for task_id, (command, conditions, _) in cases.items():
        add(client, task_id, command, exit_conditions=conditions)
        add(client, f"after-{task_id}", "/bin/true", depends_on=after(task_id))
    for task_id, (_, _, runs) in cases.items():
        wait_task_done(client, "job1", task_id)
        if runs:
            assert wait_task_done(client, "job1", f"after-{task_id}").execution_info.result == "success"
    # Once everything that can run has run, the blocked dependents are still waiting, for ever.
    wait_for(lambda: client.get_job_task_counts("job1").task_counts.running == 0, what="quiet job")
    blocked = {t.id for t in client.list_tasks("job1") if t.state == "active"}
    assert blocked == {f"after-{t}" for t, (_, _, runs) in cases.items() if not runs}


def test_ranges_and_ids(client: BatchClient) -> None:
    make_pool(client, nodes=1, slots=4)
    make_job(client, uses_task_dependencies=True)
    add(client, "last", "/bin/true", depends_on=after("named", ranges=((1, 3),)))
    for task_id in ("1", "2", "3", "named"):
        add(client, task_id, "/bin/sleep 0.2")
    last = wait_task_done(client, "job1", "last")
    ends = [wait_task_done(client, "job1", t).execution_info.end_time for t in ("1", "2", "3", "named")]
    assert last.execution_info.start_time >= max(ends)
    error = error_of(lambda: add(client, "x", "/bin/true", depends_on=after(ranges=((5, 2),))))
    assert error.status_code == 400 and error.error.code == "InvalidPropertyValue"
    make_job(client, "nodeps")
    error = error_of(lambda: add(client, "x", "/bin/true", job_id="nodeps", depends_on=after("1")))
    assert error.status_code == 400 and error.error.code == "TaskDependenciesNotSpecifiedOnJob"


def test_job_actions(client: BatchClient) -> None:
    make_pool(client, nodes=1, slots=4)
    # With onTaskFailure noaction, a jobAction is refused, as the spec says.
    make_job(client, "quiet")
    error = error_of(
        lambda: add(
            client, "t", "/bin/true", job_id="quiet", exit_conditions=exits(default=on(job="terminate"))
        )
    )
    assert error.status_code == 400 and error.error.code == "InvalidPropertyValue"
    # performexitoptionsjobaction: a failure terminates the job by default (reason TaskFailed)...
    make_job(client, "strict", task_failure_mode="performexitoptionsjobaction")
    add(client, "bad", "/bin/sh -c 'exit 1'", job_id="strict")
    wait_for(lambda: client.get_job("strict").state == "completed", what="job terminated")
    assert client.get_job("strict").execution_info.termination_reason == "TaskFailed"
    # ...unless the exit code says otherwise; and "disable" disables it.
    make_job(client, "lenient", task_failure_mode="performexitoptionsjobaction")
    add(
        client,
        "tolerated",
        "/bin/sh -c 'exit 5'",
        job_id="lenient",
        exit_conditions=exits((5, on(job="none"))),
    )
    wait_task_done(client, "lenient", "tolerated")
    add(
        client,
        "disabling",
        "/bin/sh -c 'exit 6'",
        job_id="lenient",
        exit_conditions=exits(default=on(job="disable")),
    )
    wait_task_done(client, "lenient", "disabling")
    wait_for(lambda: client.get_job("lenient").state == "disabled", what="job disabled")


def test_a_range_of_many_tasks_with_satisfy_on_failure_and_a_reactivated_dependency(
    client: BatchClient,
) -> None:
    """A merge-like task after a range of 60 tasks, some of which fail with dependencyAction
    satisfy: it runs once all have completed, not before. A blocked dependent shows as active."""
    make_pool(client, nodes=2, slots=8)
    make_job(client, uses_task_dependencies=True)
    satisfy = exits(default=on("satisfy"))
    tasks = [
        bm.BatchTaskCreateOptions(
            id=str(i),
            command_line="/bin/sh -c 'exit 5'" if i % 7 == 0 else "/bin/sleep 0.05",
            exit_conditions=satisfy,
        )
        for i in range(1, 61)
    ]
    client.create_task_collection("job1", bm.BatchTaskGroup(task_values=tasks))
    add(client, "merge", "/bin/true", depends_on=after(ranges=((1, 60),)))
    add(client, "x", "/bin/sh -c 'exit 5'")
    add(client, "blocked", "/bin/true", depends_on=after("x"))
    merge = wait_task_done(client, "job1", "merge")
    ends = [wait_task_done(client, "job1", str(i)).execution_info.end_time for i in range(1, 61)]
    assert merge.execution_info.result == "success" and merge.execution_info.start_time >= max(ends)
    # Task x failed without satisfy: its dependent waits, active, for ever.
    assert wait_task_done(client, "job1", "x").execution_info.result == "failure"
    assert client.get_task("job1", "blocked").state == "active"
    # A dependency met, then reactivated (active again), is unmet again for a task added now.
    client.reactivate_task("job1", "14")
    add(client, "late", "/bin/true", depends_on=after(ranges=((10, 20),)))
    wait_task_done(client, "job1", "14")
    late = wait_task_done(client, "job1", "late")
    assert late.execution_info.start_time >= client.get_task("job1", "14").execution_info.end_time


def test_the_dependency_cursor_costs_one_look_per_completion() -> None:
    """Unit: dependencies_met resumes where it stopped, and starts again when the epoch changes."""
    from shardrun.emulator.exits import dependencies_met

    tasks = {str(i): {"id": str(i), "state": "active"} for i in range(1, 1001)}
    waiting = {"id": "m", "dependsOn": {"taskIdRanges": [{"start": 1, "end": 1000}]}}
    for i in range(1, 1001):
        assert not dependencies_met(waiting, tasks, epoch=1)
        tasks[str(i)].update(state="completed", _dependencyAction="satisfy")
    assert waiting["_dependsCursor"] == (1, 0, 0, 1000)
    assert dependencies_met(waiting, tasks, epoch=1)
    tasks["3"]["state"] = "active"  # reactivated: the epoch changes, so the check starts again
    assert dependencies_met(waiting, tasks, epoch=1)  # (a stale epoch would not see it)
    assert not dependencies_met(waiting, tasks, epoch=2)
