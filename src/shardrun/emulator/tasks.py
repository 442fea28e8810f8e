"""Task operations, including the task collection and the task's files on its node."""

from __future__ import annotations

import mimetypes
import re
import shutil
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import (
    Request,
    Response,
    check_conditions,
    check_id,
    get_one,
    handles,
    list_from,
    list_page,
    resource_url,
)
from .errors import BatchApiError, bad_property, not_found
from .jobs import UNLIMITED, check_resource_files, find_job, job_accepts_changes
from .state import Resource, iso, utcnow
from .taskindex import task_source

if TYPE_CHECKING:
    from .server import Emulator

DEFAULT_RETENTION = "P7D"
_UNSUPPORTED_TASK = (
    "multiInstanceSettings",
    "applicationPackageReferences",
    "authenticationTokenSettings",
)
TASK_ID_LIMIT = 64000  # characters of dependsOn.taskIds, all IDs together


def find_task(emu: Emulator, job: Resource, task_id: str) -> Resource:
    task = emu.state.job_tasks(job["id"]).get(task_id.lower())
    if task is None:
        raise not_found("Task", task_id)
    return task


def _new_task(emu: Emulator, req: Request, job: Resource, body: dict[str, Any]) -> Resource:
    """Check one task body beyond the schema and build the task; raises BatchApiError (client error)."""
    check_id("id", body["id"])
    for key in _UNSUPPORTED_TASK:
        if key in body:
            raise BatchApiError(
                400,
                "InvalidPropertyValue",
                values=[("PropertyName", key), ("Reason", "not supported by the shardrun Batch emulator")],
            )
    check_resource_files("resourceFiles", body.get("resourceFiles", []))
    prep = job.get("jobPreparationTask")
    if prep is not None and body["id"].lower() == prep["id"].lower():
        raise BatchApiError(409, "TaskIdSameAsJobPreparationTask")
    _check_dependencies(job, body)
    _check_exit_conditions(job, body.get("exitConditions"))
    if body.get("requiredSlots", 1) < 1:
        raise bad_property("requiredSlots", body["requiredSlots"], "must be at least 1")
    pool = emu.state.pools.get(job["poolInfo"]["poolId"].lower())
    if pool is not None:
        has_containers = "containerConfiguration" in pool.get("virtualMachineConfiguration", {})
        if has_containers != ("containerSettings" in body):
            raise bad_property(
                "containerSettings",
                "present" if "containerSettings" in body else "absent",
                "a task sets containerSettings exactly when its pool has containerConfiguration",
            )
        if body.get("requiredSlots", 1) > pool.get("taskSlotsPerNode", 1):
            raise bad_property(
                "requiredSlots", body["requiredSlots"], "more than the pool's taskSlotsPerNode"
            )
    now = iso(utcnow())
    task: Resource = {
        "id": body["id"],
        "url": resource_url(req, "jobs", job["id"], "tasks", body["id"]),
        "creationTime": now,
        "state": "active",
        "stateTransitionTime": now,
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
        "requiredSlots": 1,
    }
    task.update({k: v for k, v in body.items() if k != "id"})
    task["constraints"] = {
        "maxWallClockTime": UNLIMITED,
        "retentionTime": DEFAULT_RETENTION,
        "maxTaskRetryCount": job["constraints"].get("maxTaskRetryCount", 0),
        **body.get("constraints", {}),
    }
    task["executionInfo"] = {"retryCount": 0, "requeueCount": 0}
    return task


def _add(emu: Emulator, job: Resource, task: Resource) -> None:
    tasks = emu.state.job_tasks(job["id"])
    if task["id"].lower() in tasks:
        raise BatchApiError(409, "TaskExists")
    tasks[task["id"].lower()] = task
    emu.state.index.add(job["id"].lower(), task)
    emu.state.touch(task)


def _check_dependencies(job: Resource, body: dict[str, Any]) -> None:
    depends = body.get("dependsOn")
    if depends is None:
        return
    if not job.get("usesTaskDependencies"):
        raise BatchApiError(400, "TaskDependenciesNotSpecifiedOnJob")
    if sum(len(t) for t in depends.get("taskIds", [])) > TASK_ID_LIMIT:
        raise BatchApiError(400, "TaskDependencyListTooLong")
    for span in depends.get("taskIdRanges", []):
        if span["start"] > span["end"] or span["start"] < 0:
            raise bad_property(
                "dependsOn.taskIdRanges", f"{span['start']}-{span['end']}", "not a range of IDs"
            )


def _check_exit_conditions(job: Resource, conditions: dict[str, Any] | None) -> None:
    """A jobAction needs a job whose onTaskFailure is performexitoptionsjobaction (the spec)."""
    if not conditions:
        return
    options = [
        m["exitOptions"] for m in conditions.get("exitCodes", []) + conditions.get("exitCodeRanges", [])
    ]
    options += [
        conditions[k] for k in ("preProcessingError", "fileUploadError", "default") if k in conditions
    ]
    for span in conditions.get("exitCodeRanges", []):
        if span["start"] > span["end"]:
            raise bad_property(
                "exitConditions.exitCodeRanges", f"{span['start']}-{span['end']}", "start > end"
            )
    if job.get("onTaskFailure", "noaction") == "noaction" and any("jobAction" in o for o in options):
        raise bad_property(
            "exitConditions.jobAction",
            "present",
            "the job's onTaskFailure is noaction: a jobAction is not allowed",
        )


@handles("Tasks_CreateTask")
def create_task(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    job_accepts_changes(job)
    task = _new_task(emu, req, job, req.body)
    _add(emu, job, task)
    return Response(201, resource=task, data_service_id=task["url"])


@handles("Tasks_CreateTaskCollection")
def create_task_collection(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    job_accepts_changes(job)
    results = []
    for body in req.body["value"]:
        try:
            task = _new_task(emu, req, job, body)
            _add(emu, job, task)
        except BatchApiError as error:
            results.append(
                {
                    "status": "clienterror" if error.status < 500 else "servererror",
                    "taskId": body["id"],
                    "error": error.body(req.request_id, iso(utcnow())),
                }
            )
            continue
        results.append(
            {
                "status": "success",
                "taskId": task["id"],
                "eTag": task["eTag"],
                "lastModified": task["lastModified"],
                "location": task["url"],
            }
        )
    return Response(200, {"value": results})


@handles("Tasks_ListTasks")
def list_tasks(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    tasks = emu.state.job_tasks(job["id"])
    return list_from(emu, req, "BatchTask", task_source(emu.state.index.job(job["id"].lower()), tasks))


@handles("Tasks_GetTask")
def get_task(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    return get_one(emu, req, "BatchTask", find_task(emu, job, req.params["taskId"]))


@handles("Tasks_ReplaceTask")
def replace_task(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    task = find_task(emu, job, req.params["taskId"])
    check_conditions(req, task, write=True)
    if task["state"] == "completed":
        raise BatchApiError(409, "TaskCompleted")
    # Only the constraints of a task can change after it is added.
    task["constraints"] = {**task["constraints"], **(req.body.get("constraints") or {})}
    emu.state.touch(task)
    return Response(200, resource=task, data_service_id=task["url"])


@handles("Tasks_DeleteTask")
def delete_task(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    task = find_task(emu, job, req.params["taskId"])
    check_conditions(req, task, write=True)
    emu.scheduler.stop_task(job, task, "delete")
    emu.state.index.remove(task)
    del emu.state.job_tasks(job["id"])[task["id"].lower()]
    emu.state.changed()
    return Response(200)


@handles("Tasks_TerminateTask")
def terminate_task(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    task = find_task(emu, job, req.params["taskId"])
    check_conditions(req, task, write=True)
    if task["state"] == "completed":
        raise BatchApiError(409, "TaskCompleted")
    emu.scheduler.stop_task(job, task, "terminate")
    return Response(204, resource=task, data_service_id=task["url"])


@handles("Tasks_ReactivateTask")
def reactivate_task(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    job_accepts_changes(job)
    task = find_task(emu, job, req.params["taskId"])
    check_conditions(req, task, write=True)
    if task["state"] != "completed":
        raise BatchApiError(409, "TaskNotCompleted")
    if task["executionInfo"].get("result") == "success":
        raise BatchApiError(409, "TaskSucceeded")
    emu.scheduler.reactivate(task)
    return Response(204, resource=task, data_service_id=task["url"])


# -- files ---------------------------------------------------------------------------------------


def _task_dir(emu: Emulator, job: Resource, task_id: str) -> Path:
    task = find_task(emu, job, task_id)
    where = task.get("_dir")
    if not where or not Path(where).is_dir():
        raise BatchApiError(409, "TaskFilesUnavailable")
    return Path(where)


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise not_found("File", relative)
    return path


def _stamp(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def _file_entry(req: Request, root: Path, path: Path) -> dict[str, Any]:
    name = path.relative_to(root).as_posix()
    url = req.base_url + req.path.split("?")[0].rstrip("/") + "/" + urllib.parse.quote(name, safe="")
    entry: dict[str, Any] = {"name": name, "url": url, "isDirectory": path.is_dir()}
    if not path.is_dir():
        info = path.stat()
        entry["properties"] = {
            "creationTime": _stamp(info.st_ctime),
            "lastModified": _stamp(info.st_mtime),
            "contentLength": str(info.st_size),
            "contentType": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            "fileMode": oct(info.st_mode & 0o7777)[2:].rjust(4, "0"),
        }
    return entry


@handles("Tasks_ListTaskFiles")
def list_task_files(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    root = _task_dir(emu, job, req.params["taskId"])
    paths = root.rglob("*") if req.query.get("recursive") else root.iterdir()
    entries = [(p.relative_to(root).as_posix(), _file_entry(req, root, p)) for p in paths]
    return list_page(emu, req, "BatchNodeFile", entries)


def _file(emu: Emulator, req: Request) -> Path:
    job = find_job(emu, req.params["jobId"])
    root = _task_dir(emu, job, req.params["taskId"])
    path = _inside(root, req.params["filePath"])
    if not path.exists():
        raise not_found("File", req.params["filePath"])
    return path


def _file_headers(req: Request, path: Path) -> dict[str, str]:
    info = path.stat()
    return {
        "ocp-creation-time": datetime.fromtimestamp(info.st_ctime, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "ocp-batch-file-isdirectory": str(path.is_dir()).lower(),
        "ocp-batch-file-url": req.base_url + req.path,
        "ocp-batch-file-mode": oct(info.st_mode & 0o7777)[2:].rjust(4, "0"),
        "Last-Modified": datetime.fromtimestamp(info.st_mtime, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Type": "application/octet-stream",
    }


@handles("Tasks_GetTaskFile")
def get_task_file(emu: Emulator, req: Request) -> Response:
    path = _file(emu, req)
    if path.is_dir():
        raise not_found("File", req.params["filePath"])
    data = path.read_bytes()
    wanted = req.header("ocp-range")
    if wanted:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
        if not m or int(m.group(1)) >= max(len(data), 1):
            raise BatchApiError(416, "InvalidRange")
        end = int(m.group(2)) + 1 if m.group(2) else len(data)
        data = data[int(m.group(1)) : end]
    return Response(200, data, headers=_file_headers(req, path))


@handles("Tasks_GetTaskFileProperties")
def task_file_properties(emu: Emulator, req: Request) -> Response:
    path = _file(emu, req)
    headers = _file_headers(req, path)
    headers["Content-Length"] = str(0 if path.is_dir() else path.stat().st_size)
    return Response(200, headers=headers)


@handles("Tasks_DeleteTaskFile")
def delete_task_file(emu: Emulator, req: Request) -> Response:
    path = _file(emu, req)
    if path.is_dir():
        if any(path.iterdir()) and not req.query.get("recursive"):
            raise BatchApiError(
                409,
                "OperationInvalidForCurrentState",
                values=[("Reason", "the directory is not empty; pass recursive=true")],
            )
        shutil.rmtree(path)
    else:
        path.unlink()
    return Response(200)
