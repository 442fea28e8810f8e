"""The per-job task indexes behind listing and counts: completed tasks since a time, in completion
order, across pages, after deletions and reactivations; every task in the order it was added."""

from __future__ import annotations

from datetime import UTC, datetime

from azure.batch import BatchClient
from azure.batch import models as bm

from shardrun.emulator.odata import top_conjuncts

from .conftest import make_job, make_pool


def ids(tasks: object) -> list[str]:
    return [t.id for t in tasks]  # type: ignore[attr-defined]


def test_completed_since_a_time_pages_in_completion_order(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    make_job(client)
    group = [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="x") for i in range(10)]
    client.create_task_collection("job1", bm.BatchTaskGroup(task_values=group))
    for i in (3, 1, 0):
        client.terminate_task("job1", f"t{i}")
    mark = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for i in (7, 5, 6):
        client.terminate_task("job1", f"t{i}")
    since = f"state eq 'completed' and stateTransitionTime ge DateTime'{mark}'"
    assert ids(client.list_tasks("job1", filter=since, max_results=2)) == ["t7", "t5", "t6"]
    client.delete_task("job1", "t6")
    client.reactivate_task("job1", "t5")
    assert ids(client.list_tasks("job1", filter=since, max_results=1)) == ["t7"]
    client.terminate_task("job1", "t5")  # completes again, later
    assert ids(client.list_tasks("job1", filter=since)) == ["t7", "t5"]
    assert ids(client.list_tasks("job1", filter="state eq 'completed'")) == ["t3", "t1", "t0", "t7", "t5"]
    # The filter still applies in full: an extra condition, and a top-level `or` (no index).
    assert ids(client.list_tasks("job1", filter=since + " and id ne 't7'")) == ["t5"]
    either = "state eq 'completed' or id eq 't9'"
    assert ids(client.list_tasks("job1", filter=either, max_results=4)) == ["t0", "t1", "t3", "t5", "t7", "t9"]
    assert ids(client.list_tasks("job1", max_results=3)) == [f"t{i}" for i in range(10) if i != 6]
    counts = client.get_job_task_counts("job1")
    assert (counts.task_counts.active, counts.task_counts.failed, counts.task_slot_counts.completed) == (4, 5, 5)


def test_top_level_conjuncts() -> None:
    assert top_conjuncts("state eq 'completed' and stateTransitionTime ge DateTime'2025-01-01T00:00:00Z'") == [
        ("state", "eq", "completed"),
        ("stateTransitionTime", "ge", "2025-01-01T00:00:00Z"),
    ]
    assert top_conjuncts("state eq 'completed' or id eq 'x'") == []
    assert top_conjuncts("not (state eq 'completed') and id eq 'x'") == [("id", "eq", "x")]
    assert top_conjuncts(None) == []
