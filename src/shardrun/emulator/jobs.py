"""Job operations, including task counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import Request, Response, check_conditions, check_id, get_one, handles, list_page, resource_url
from .errors import BatchApiError, bad_property, exists, not_found
from .state import Resource, iso, utcnow

if TYPE_CHECKING:
    from .server import Emulator

# TimeSpan.MaxValue, which the service reports for "no limit".
UNLIMITED = "P10675199DT2H48M5.4775807S"
# Features a job file can name that the emulator does not run; rejected rather than ignored.
_UNSUPPORTED_JOB = ("jobManagerTask", "jobReleaseTask")
PREP_DEFAULT_ID = "jobpreparation"
RESOURCE_SOURCES = ("autoStorageContainerName", "storageContainerUrl", "httpUrl")


def check_resource_files(name: str, resource_files: list[dict[str, Any]]) -> None:
    """One source per file, as the spec requires; the auto-storage account is not emulated."""
    for resource_file in resource_files:
        sources = [k for k in RESOURCE_SOURCES if k in resource_file]
        if sources == ["autoStorageContainerName"]:
            raise bad_property(name, "autoStorageContainerName", "the emulator has no auto-storage account")
        if len(sources) != 1:
            raise bad_property(
                name,
                ", ".join(sources) or "none",
                "exactly one of autoStorageContainerName, storageContainerUrl and httpUrl is required",
            )


def find_job(emu: Emulator, job_id: str) -> Resource:
    job = emu.state.jobs.get(job_id.lower())
    if job is None:
        raise not_found("Job", job_id)
    return job


def job_accepts_changes(job: Resource) -> None:
    state = job["state"]
    if state == "completed":
        raise BatchApiError(409, "JobCompleted")
    if state == "terminating":
        raise BatchApiError(409, "JobBeingTerminated")
    if state == "deleting":
        raise BatchApiError(409, "JobBeingDeleted")


def set_state(job: Resource, state: str) -> None:
    now = iso(utcnow())
    job["previousState"] = job["state"]
    job["previousStateTransitionTime"] = job["stateTransitionTime"]
    job["state"] = state
    job["stateTransitionTime"] = now


@handles("Jobs_CreateJob")
def create_job(emu: Emulator, req: Request) -> Response:
    body: dict[str, Any] = req.body
    check_id("id", body["id"])
    if body["id"].lower() in emu.state.jobs:
        raise exists("Job")
    for key in _UNSUPPORTED_JOB:
        if key in body:
            raise BatchApiError(
                400,
                "InvalidPropertyValue",
                values=[("PropertyName", key), ("Reason", "not supported by the shardrun Batch emulator")],
            )
    if "jobPreparationTask" in body:
        body = {**body, "jobPreparationTask": _preparation(body["jobPreparationTask"])}
    pool_info = body["poolInfo"]
    if "autoPoolSpecification" in pool_info or "poolId" not in pool_info:
        raise BatchApiError(
            400,
            "InvalidPropertyValue",
            values=[
                ("PropertyName", "poolInfo"),
                ("Reason", "the emulator runs jobs on an existing pool (poolId) only"),
            ],
        )
    now = iso(utcnow())
    job: Resource = {
        "id": body["id"],
        "url": resource_url(req, "jobs", body["id"]),
        "creationTime": now,
        "state": "active",
        "stateTransitionTime": now,
        "priority": 0,
        "maxParallelTasks": -1,
        "allowTaskPreemption": False,
        "usesTaskDependencies": False,
        "constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0},
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
    }
    job.update({k: v for k, v in body.items() if k != "id"})
    job["constraints"] = {
        "maxWallClockTime": UNLIMITED,
        "maxTaskRetryCount": 0,
        **body.get("constraints", {}),
    }
    job["executionInfo"] = {"startTime": now, "poolId": pool_info["poolId"]}
    job["_order"] = len(emu.state.jobs)
    emu.state.jobs[job["id"].lower()] = job
    emu.state.job_tasks(job["id"])
    emu.state.touch(job)
    return Response(201, resource=job, data_service_id=job["url"])


def _preparation(prep: dict[str, Any]) -> dict[str, Any]:
    """Check a jobPreparationTask and fill in what the service fills in: its ID and defaults."""
    check_id("jobPreparationTask.id", prep.get("id", PREP_DEFAULT_ID))
    check_resource_files("jobPreparationTask.resourceFiles", prep.get("resourceFiles", []))
    out = {
        "id": PREP_DEFAULT_ID,
        "waitForSuccess": True,
        "rerunOnNodeRebootAfterSuccess": True,
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
        **prep,
    }
    out["constraints"] = {
        "maxWallClockTime": UNLIMITED,
        "retentionTime": "P7D",
        "maxTaskRetryCount": 0,
        **prep.get("constraints", {}),
    }
    return out


@handles("Jobs_GetJob")
def get_job(emu: Emulator, req: Request) -> Response:
    return get_one(emu, req, "BatchJob", find_job(emu, req.params["jobId"]))


@handles("Jobs_ListJobs")
def list_jobs(emu: Emulator, req: Request) -> Response:
    return list_page(emu, req, "BatchJob", list(emu.state.jobs.items()))


@handles("Jobs_UpdateJob")
def update_job(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    check_conditions(req, job, write=True)
    job_accepts_changes(job)
    body: dict[str, Any] = req.body
    if "poolInfo" in body:
        if "poolId" not in body["poolInfo"]:
            raise BatchApiError(
                400,
                "InvalidPropertyValue",
                values=[
                    ("PropertyName", "poolInfo"),
                    ("Reason", "the emulator runs jobs on an existing pool only"),
                ],
            )
        job["poolInfo"] = body["poolInfo"]
        job["executionInfo"]["poolId"] = body["poolInfo"]["poolId"]
    if "constraints" in body:
        job["constraints"] = {**job["constraints"], **body["constraints"]}
    for key in (
        "priority",
        "allowTaskPreemption",
        "maxParallelTasks",
        "onAllTasksComplete",
        "metadata",
        "networkConfiguration",
    ):
        if key in body:
            job[key] = body[key]
    emu.state.touch(job)
    return Response(200, resource=job, data_service_id=job["url"])


@handles("Jobs_TerminateJob")
def terminate_job(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    check_conditions(req, job, write=True)
    job_accepts_changes(job)
    reason = (req.body or {}).get("terminateReason") or "UserTerminate"
    emu.scheduler.terminate_job(job, reason)
    return Response(202, resource=job, data_service_id=job["url"])


@handles("Jobs_DeleteJob")
def delete_job(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    check_conditions(req, job, write=True)
    if job["state"] != "deleting":
        set_state(job, "deleting")
        emu.state.touch(job)
    return Response(202)


@handles("Jobs_DisableJob")
def disable_job(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    check_conditions(req, job, write=True)
    if job["state"] != "active":
        raise BatchApiError(409, "OperationInvalidForCurrentState", values=[("JobState", job["state"])])
    emu.scheduler.disable_job(job, req.body["disableTasks"])
    emu.state.touch(job)
    return Response(202, resource=job, data_service_id=job["url"])


@handles("Jobs_EnableJob")
def enable_job(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    check_conditions(req, job, write=True)
    if job["state"] not in ("disabled", "disabling"):
        raise BatchApiError(409, "OperationInvalidForCurrentState", values=[("JobState", job["state"])])
    set_state(job, "active")
    emu.state.touch(job)
    return Response(202, resource=job, data_service_id=job["url"])


@handles("Jobs_GetJobTaskCounts")
def task_counts(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    counts, slots = emu.state.index.job(job["id"].lower()).task_counts()
    return Response(200, {"taskCounts": counts, "taskSlotCounts": slots})
