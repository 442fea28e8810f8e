"""The spec's own example requests are accepted, and the emulator's responses have the spec's shape.

The examples are the official ones for api-version 2025-06-01 (copied from shared/azure-batch-spec
into spec_examples/ so the tests do not depend on a folder outside the repository).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient

from shardrun.emulator.spec import SPEC_FILE, load_spec

from .conftest import make_job, make_pool, send

EXAMPLES = Path(__file__).parent / "spec_examples"
SPEC_SHA256 = "6818b714710e74f9002634a4137d6f6e2e89a5a59e2cd6d934cc36efa5af637f"


def test_vendored_spec_is_the_official_file() -> None:
    assert hashlib.sha256(SPEC_FILE.read_bytes()).hexdigest() == SPEC_SHA256


def _prepare(client: BatchClient, op_id: str) -> None:
    """Create what an example's operation expects to exist."""
    if op_id in ("Pools_GetPool", "Pools_EvaluatePoolAutoScale"):
        pool_id = "pool" if op_id == "Pools_GetPool" else "poolId"
        make_pool(
            client,
            pool_id,
            nodes=0,
            enable_auto_scale=op_id != "Pools_GetPool",
            **(
                {"auto_scale_formula": "$TargetDedicatedNodes=0", "auto_scale_evaluation_interval": "PT5M"}
                if op_id != "Pools_GetPool"
                else {}
            ),
        )
    if op_id.startswith("Tasks_") or op_id == "Jobs_GetJobTaskCounts":
        make_job(client, "jobId", "no-such-pool")  # tasks stay active: nothing runs them
    if op_id == "Tasks_GetTask":
        send(client, "POST", "/jobs/jobId/tasks", {"id": "taskId", "commandLine": "/bin/true"})
    if op_id == "Jobs_ListJobs":
        make_job(client, "jobId", "poolId")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_example_request_is_accepted(name: str, client: BatchClient) -> None:
    spec = load_spec()
    example = json.loads((EXAMPLES / name).read_text())
    op = next(o for o in spec.operations if o.operation_id == example["operationId"])
    params: dict[str, Any] = example["parameters"]
    path = re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), op.template)
    body_param = next(
        (p for p in spec.raw["paths"][op.template][op.method.lower()]["parameters"] if p.get("in") == "body"),
        None,
    )
    body = params[body_param["name"]] if body_param else None
    _prepare(client, op.operation_id)

    response = send(client, op.method, path, body)

    expected_status = int(next(iter(example["responses"])))
    assert response.status_code == expected_status
    assert response.headers["request-id"]
    definition = op.responses[expected_status]
    if definition is not None:
        # Ours and the official example response both validate against the same definition.
        assert spec.response_problems(definition, response.json()) == []
        assert spec.response_problems(definition, example["responses"][str(expected_status)]["body"]) == []
    if op.operation_id == "Pools_EvaluatePoolAutoScale":
        assert response.json()["results"] == example["responses"]["200"]["body"]["results"]


def test_sdk_reads_what_the_examples_created(client: BatchClient) -> None:
    """The SDK deserializes a pool, job, task list and counts made from the examples' bodies."""
    pool_body = json.loads(
        (EXAMPLES / "Pools_CreatePool_VirtualMachineConfigurationWithContainers.json").read_text()
    )["parameters"]["pool"]
    assert send(client, "POST", "/pools", pool_body).status_code == 201
    pool = client.get_pool("pool2")
    assert pool.virtual_machine_configuration.container_configuration.container_image_names == ["busybox"]
    assert pool.target_dedicated_nodes == 5 and pool.task_slots_per_node == 3
    assert pool.etag and pool.last_modified and pool.url.endswith("/pools/pool2")
    make_job(client, "jobId", "pool-not-there")
    group = json.loads((EXAMPLES / "Tasks_CreateTaskCollection_Basic.json").read_text())["parameters"]
    assert send(client, "POST", "/jobs/jobId/addtaskcollection", group["taskCollection"]).status_code == 200
    tasks = list(client.list_tasks("jobId"))
    assert [t.id for t in tasks] == ["simple1", "simple2"]
    assert all(t.state == "active" and t.execution_info.retry_count == 0 for t in tasks)
    assert client.get_job_task_counts("jobId").task_counts.active == 2
