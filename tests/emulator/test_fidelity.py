"""Fidelity fixes, each checked against the spec's words: node counts list like any list, output
upload failures carry the documented TaskFailureInformationCodes, and a preemption is neither a
requeue nor a retry (the preemption test is in test_autoscale_faults.py)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.batch import BatchClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.rest import HttpRequest

from shardrun.emulator.files import upload_failure

from .conftest import error_of, make_pool, send, wait_for


def test_pool_node_counts_filter_and_pages(client: BatchClient) -> None:
    for name, nodes in (("pool-a", 0), ("pool-b", 2), ("pool-c", 0)):
        make_pool(client, name, nodes=nodes)
    wait_for(lambda: all(n.state == "idle" for n in client.list_nodes("pool-b")), what="idle nodes")
    only = list(client.list_pool_node_counts(filter="poolId eq 'pool-b'"))
    assert [c.pool_id for c in only] == ["pool-b"]
    assert only[0].dedicated.idle == 2 and only[0].dedicated.total == 2 and only[0].low_priority.total == 0
    assert [c.pool_id for c in client.list_pool_node_counts(filter="startswith(poolId, 'pool-')")] == [
        "pool-a",
        "pool-b",
        "pool-c",
    ]
    # maxresults pages, and odata.nextLink carries the filter along.
    first = send(client, "GET", "/nodecounts?maxresults=1&$filter=poolId ne 'pool-a'").json()
    assert [c["poolId"] for c in first["value"]] == ["pool-b"] and "odata.nextLink" in first
    second = client.send_request(HttpRequest("GET", first["odata.nextLink"])).json()
    assert [c["poolId"] for c in second["value"]] == ["pool-c"] and "odata.nextLink" not in second
    # The SDK's pager follows the links.
    assert [c.pool_id for c in client.list_pool_node_counts(max_results=1)] == ["pool-a", "pool-b", "pool-c"]
    bad = error_of(lambda: send(client, "GET", "/nodecounts?maxresults=0"))
    assert bad.status_code == 400 and bad.error.code == "OutOfRangeQueryParameterValue"
    bad = error_of(lambda: list(client.list_pool_node_counts(filter="poolId eq")))
    assert bad.status_code == 400 and bad.error.code == "InvalidQueryParameterValue"


def _status(error: Any, status: int) -> Any:
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (_status(ResourceNotFoundError("The specified container does not exist."), 404), "FileUploadContainerNotFound"),
        (_status(HttpResponseError("AuthorizationPermissionMismatch"), 403), "FileUploadAccessDenied"),
        (ClientAuthenticationError("Server failed to authenticate the request."), "FileUploadAccessDenied"),
        (_status(ResourceExistsError("The blob is being modified."), 409), "FileUploadConflict"),
        (_status(HttpResponseError("InternalError"), 500), "FileUploadMiscError"),
        (ServiceRequestError("connection refused"), "FileUploadMiscError"),
        (OSError("disk gone"), "FileUploadMiscError"),
    ],
)
def test_upload_failure_codes(error: BaseException, code: str) -> None:
    """The storage answer picks the documented code (Azurite gives real 403 and 404 answers in
    test_files_state.py; a 409 and a storage outage are shaped here)."""
    assert upload_failure(error)[0] == code
