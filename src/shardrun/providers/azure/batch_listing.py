"""Task listings read as the service's JSON: a record per task the client still needs, never an
SDK model per listed task (a poll re-reads its overlap window, and a re-attach reads every task)."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

COMPLETED_SELECT = ["id", "displayName", "state", "stateTransitionTime", "executionInfo", "nodeInfo"]
ATTEMPT_RE = re.compile(r"attempt (\d+)$")


def submitted_attempt(display_name: str | None) -> int | None:
    """The first attempt number of a submission, kept in the task's display name."""
    m = ATTEMPT_RE.search(display_name or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class FailureInfo:
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """The parts of a task's executionInfo the client reads."""

    result: str | None = None
    retry_count: int = 0
    exit_code: int | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    last_retry_time: dt.datetime | None = None
    failure_info: FailureInfo | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task of a listing, as the client needs it (from the service's JSON)."""

    id: str
    display_name: str | None = None
    state: str | None = None
    state_transition_time: dt.datetime | None = None
    execution_info: ExecutionInfo = ExecutionInfo()
    node_id: str | None = None

    @property
    def completed(self) -> bool:
        return self.state == "completed"


def parse_time(text: str | None) -> dt.datetime | None:
    """A service timestamp ('2026-01-01T00:00:00.1234567Z'): microseconds are enough."""
    return dt.datetime.fromisoformat(text) if text else None


def task_record(item: dict[str, Any]) -> TaskRecord:
    info = item.get("executionInfo") or {}
    failure = info.get("failureInfo")
    message = (failure or {}).get("message")
    return TaskRecord(
        id=item["id"], display_name=item.get("displayName"), state=item.get("state"),
        state_transition_time=parse_time(item.get("stateTransitionTime")),
        execution_info=ExecutionInfo(
            result=info.get("result"), retry_count=int(info.get("retryCount") or 0),
            exit_code=info.get("exitCode"), start_time=parse_time(info.get("startTime")),
            end_time=parse_time(info.get("endTime")), last_retry_time=parse_time(info.get("lastRetryTime")),
            failure_info=FailureInfo(failure.get("code"), message if isinstance(message, str) else None)
            if failure else None),
        node_id=(item.get("nodeInfo") or {}).get("nodeId"))


def list_task_pages(client: Any, job_id: str, select: list[str], filter: str | None = None,
                    page_size: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """The job's tasks (List Tasks), a page (up to 1,000) at a time, as the service's JSON objects:
    what the SDK's list_tasks sends, through the same client (its auth and retry policy), without
    building a model per task. Raises HttpResponseError on an error answer."""
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest

    version = client._config.api_version
    url = f"/jobs/{urllib.parse.quote(job_id, safe='')}/tasks"
    params = {"api-version": version, "$select": ",".join(select)}
    if filter:
        params["$filter"] = filter
    if page_size:
        params["maxresults"] = str(page_size)
    while True:
        quoted = {k: urllib.parse.quote(v, safe="") for k, v in params.items()}
        response = client.send_request(HttpRequest("GET", url, params=quoted,
                                                   headers={"Accept": "application/json"}))
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        body = response.json()
        yield body.get("value") or []
        next_link = body.get("odata.nextLink")
        if not next_link:
            return
        parts = urllib.parse.urlsplit(next_link)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        params["api-version"] = version
        url = urllib.parse.urljoin(next_link, parts.path)


def harvest(client: Any, job_id: str, todo: dict[str, Any]
            ) -> tuple[list[tuple[TaskRecord, int]], list[Any]]:
    """What a job did while its client was away. `todo`: Batch task id -> the TaskSpec to submit.
    -> (completed tasks to report, each with its first attempt; the TaskSpecs still to submit: the
    job never got them, or the ledger already has their result and this is a retry). Read a page
    at a time: only the tasks still to report are kept."""
    wanted = dict(todo)
    finished = []
    for page in list_task_pages(client, job_id, COMPLETED_SELECT):
        for item in page:
            spec = wanted.get(item["id"])
            first = submitted_attempt(item.get("displayName")) if spec else None
            if spec is None or first is None:
                continue  # not ours to report; left to submit if the job never got it
            del wanted[item["id"]]  # the job has it: not submitted again
            if item.get("state") != "completed":
                continue  # active or running: the polls will see it finish
            task = task_record(item)
            if first + task.execution_info.retry_count < spec.first_attempt:
                wanted[item["id"]] = spec  # a result already recorded: this is a retry
            else:
                finished.append((task, first))
    return finished, [spec for bid, spec in todo.items() if bid in wanted]
