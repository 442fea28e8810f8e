"""Mutated requests are rejected with the service's status codes and error codes, in its error shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from .conftest import error_of, make_job, make_pool, send

EXAMPLES = Path(__file__).parent / "spec_examples"


def example_body(name: str, param: str) -> Any:
    return copy.deepcopy(json.loads((EXAMPLES / name).read_text())["parameters"][param])


POOL = example_body("Pools_CreatePool_VirtualMachineConfiguration.json", "pool")


def assert_batch_error(error: Any, status: int, code: str) -> dict[str, Any]:
    assert error.status_code == status
    assert error.error.code == code
    body: dict[str, Any] = error.response.json()
    assert body["code"] == code
    assert body["message"]["value"].startswith(error.error.message.split("\n")[0])
    assert "RequestId:" in body["message"]["value"]
    return body


def test_missing_required_property(client: BatchClient) -> None:
    pool = copy.deepcopy(POOL)
    del pool["vmSize"]
    body = assert_batch_error(
        error_of(lambda: send(client, "POST", "/pools", pool)), 400, "MissingRequiredProperty"
    )
    assert {"key": "PropertyName", "value": "vmSize"} in body["values"]


def test_missing_nested_required_property(client: BatchClient) -> None:
    pool = copy.deepcopy(POOL)
    del pool["virtualMachineConfiguration"]["nodeAgentSKUId"]
    body = assert_batch_error(
        error_of(lambda: send(client, "POST", "/pools", pool)), 400, "MissingRequiredProperty"
    )
    assert body["values"][0]["value"] == "virtualMachineConfiguration.nodeAgentSKUId"


def test_wrong_enum_value(client: BatchClient) -> None:
    pool = copy.deepcopy(POOL)
    pool["taskSchedulingPolicy"]["nodeFillType"] = "diagonal"
    body = assert_batch_error(
        error_of(lambda: send(client, "POST", "/pools", pool)), 400, "InvalidRequestBody"
    )
    assert any("diagonal" in v["value"] for v in body["values"])


def test_unknown_property(client: BatchClient) -> None:
    pool = copy.deepcopy(POOL)
    pool["virtualMachineConfiguration"]["imageReference"]["colour"] = "blue"
    body = assert_batch_error(
        error_of(lambda: send(client, "POST", "/pools", pool)), 400, "InvalidRequestBody"
    )
    assert "colour" in body["values"][0]["value"]


@pytest.mark.parametrize(
    "field,value",
    [("targetDedicatedNodes", "5"), ("resizeTimeout", "15 minutes"), ("taskSlotsPerNode", 2**31)],
)
def test_wrong_type_or_format(client: BatchClient, field: str, value: Any) -> None:
    pool = copy.deepcopy(POOL)
    pool[field] = value
    assert_batch_error(error_of(lambda: send(client, "POST", "/pools", pool)), 400, "InvalidRequestBody")


def test_not_json(client: BatchClient) -> None:
    from azure.core.rest import HttpRequest

    request = HttpRequest(
        "POST",
        "/pools?api-version=2025-06-01",
        content=b"{not json",
        headers={"Content-Type": "application/json; odata=minimalmetadata"},
    )
    assert_batch_error(error_of(lambda: client.send_request(request)), 400, "InvalidRequestBody")


def test_task_collection_of_101_tasks_is_too_large(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    make_job(client)
    tasks = [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(101)]
    error = error_of(lambda: client.create_task_collection("job1", bm.BatchTaskGroup(task_values=tasks)))
    assert_batch_error(error, 413, "RequestBodyTooLarge")
    assert client.get_job_task_counts("job1").task_counts.active == 0  # nothing was added
    ok = client.create_task_collection("job1", bm.BatchTaskGroup(task_values=tasks[:100]))
    assert len(ok.result_values) == 100


def test_body_over_one_megabyte_is_too_large(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    make_job(client)
    big = {"id": "big", "commandLine": "/bin/echo " + "x" * (1024 * 1024)}
    assert_batch_error(
        error_of(lambda: send(client, "POST", "/jobs/job1/tasks", big)), 413, "RequestBodyTooLarge"
    )


def test_not_found_and_exists(client: BatchClient) -> None:
    assert_batch_error(error_of(lambda: client.get_pool("nope")), 404, "PoolNotFound")
    assert_batch_error(error_of(lambda: client.get_job("nope")), 404, "JobNotFound")
    make_pool(client, nodes=0)
    assert isinstance(error_of(lambda: make_pool(client, nodes=0)), ResourceExistsError)
    assert_batch_error(error_of(lambda: make_pool(client, "POOL1", nodes=0)), 409, "PoolExists")  # case-blind
    make_job(client)
    assert_batch_error(error_of(lambda: make_job(client)), 409, "JobExists")
    assert_batch_error(error_of(lambda: client.get_task("job1", "nope")), 404, "TaskNotFound")
    client.create_task("job1", bm.BatchTaskCreateOptions(id="t1", command_line="/bin/true"))
    error = error_of(
        lambda: client.create_task("job1", bm.BatchTaskCreateOptions(id="T1", command_line="/bin/true"))
    )
    assert isinstance(error, ResourceExistsError)
    assert_batch_error(error, 409, "TaskExists")


def test_task_collection_reports_each_task(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    make_job(client)
    client.create_task("job1", bm.BatchTaskCreateOptions(id="dup", command_line="/bin/true"))
    tasks = [bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ("a", "dup", "bad id!")]
    results = {
        r.task_id: r
        for r in client.create_task_collection("job1", bm.BatchTaskGroup(task_values=tasks)).result_values
    }
    assert results["a"].status == "success" and results["a"].etag and results["a"].location
    assert results["dup"].status == "clienterror" and results["dup"].error.code == "TaskExists"
    assert (
        results["bad id!"].status == "clienterror" and results["bad id!"].error.code == "InvalidPropertyValue"
    )


def test_query_parameters_are_checked(client: BatchClient) -> None:
    from azure.core.rest import HttpRequest

    def raw(url: str) -> Any:
        return client.send_request(HttpRequest("GET", url))

    assert_batch_error(
        error_of(lambda: raw("/pools?api-version=2024-07-01.20.0")), 400, "UnsupportedRequestVersion"
    )
    assert_batch_error(error_of(lambda: raw("/pools")), 400, "MissingRequiredQueryParameter")
    assert_batch_error(
        error_of(lambda: raw("/pools?api-version=2025-06-01&colour=1")), 400, "UnsupportedQueryParameter"
    )
    assert_batch_error(
        error_of(lambda: raw("/pools?api-version=2025-06-01&maxresults=5000")),
        400,
        "OutOfRangeQueryParameterValue",
    )
    assert_batch_error(
        error_of(lambda: raw("/pools?api-version=2025-06-01&$filter=state%20eq")),
        400,
        "InvalidQueryParameterValue",
    )
    assert_batch_error(
        error_of(lambda: raw("/pools?api-version=2025-06-01&$select=colour")),
        400,
        "InvalidQueryParameterValue",
    )
    assert_batch_error(error_of(lambda: raw("/nowhere?api-version=2025-06-01")), 400, "InvalidUri")


def test_etag_and_last_modified_headers_and_conditions(client: BatchClient) -> None:
    make_pool(client, nodes=0)
    make_job(client)
    response = send(client, "GET", "/jobs/job1")
    etag = response.headers["ETag"]
    assert etag == response.json()["eTag"] and response.headers["Last-Modified"].endswith("GMT")
    client.update_job(
        "job1", bm.BatchJobUpdateOptions(priority=5), etag=etag, match_condition=MatchConditions.IfNotModified
    )
    job = client.get_job("job1")
    assert job.priority == 5 and job.etag != etag
    error = error_of(
        lambda: client.update_job(
            "job1",
            bm.BatchJobUpdateOptions(priority=7),
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )
    )
    assert isinstance(error, ResourceModifiedError)
    assert_batch_error(error, 412, "ConditionNotMet")
    assert client.get_job("job1").priority == 5


def test_sdk_error_types(client: BatchClient) -> None:
    assert isinstance(error_of(lambda: client.get_pool("nope")), ResourceNotFoundError)
    # HEAD answers 404 with no body, as the service does; azure-batch 15.1 raises on it rather than
    # returning False (its BatchExceptionPolicy runs before pool_exists can map the 404).
    assert error_of(lambda: client.pool_exists("nope")).status_code == 404
    make_pool(client, nodes=0)
    assert client.pool_exists("pool1")
