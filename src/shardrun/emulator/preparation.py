"""Job Preparation Tasks, as the service runs them.

A job's `jobPreparationTask` runs once on a node before the job's first task there, in
`workitems/<job>/job-1/<prep id>/` (the job's tasks see it as AZ_BATCH_JOB_PREP_DIR and
AZ_BATCH_JOB_PREP_WORKING_DIR). With `waitForSuccess` (the default), the job's tasks wait for it on
that node; if it still fails after its retries (`constraints.maxTaskRetryCount`), the job's tasks
never run on that node, which stays available to other jobs. Without it, they start at once and
keep being scheduled even if it fails. A non-zero exit is retried; a pre-processing error (such as
a resource file that cannot be downloaded) is not.

Its status per node is `Jobs_ListJobPreparationAndReleaseTaskStatus`. It runs again on a node that
boots again (an emulator restart) if it had not completed, or if `rerunOnNodeRebootAfterSuccess`
(default true), and on a preempted node, which comes back as a new VM.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import Request, Response, handles, list_page
from .errors import BatchApiError
from .execution import AttemptSpec, NodeDirs, Outcome, RunningAttempt
from .identity import node_identities
from .jobs import find_job
from .spec import parse_duration
from .state import Resource, iso, utcnow

if TYPE_CHECKING:
    from .nodes import Scheduler
    from .server import Emulator

KEY_PREFIX = "\x00prep:"  # Scheduler.attempts key: (job key, KEY_PREFIX + node id), never a task's
NO_LIMIT_SECONDS = 10 * 365 * 86400.0


def is_prep_key(key: tuple[str, str]) -> bool:
    return key[1].startswith(KEY_PREFIX)


def node_allows(sched: Scheduler, job: Resource, pool: Resource, node: Resource, *, start: bool) -> bool:
    """Whether the job's tasks may run on this node now. With `start`, a node where the job's
    preparation has not run yet starts it (the job has work for the node)."""
    prep = job.get("jobPreparationTask")
    if prep is None:
        return True
    status = job.setdefault("_prep", {}).get(node["id"])
    if status is None:
        if not start:
            return False
        _launch(sched, job, pool, node, retry=False)
        return not prep["waitForSuccess"]
    info = status["jobPreparationTaskExecutionInfo"]
    if info["state"] == "completed" and info.get("result") == "success":
        return True
    return not prep["waitForSuccess"]


def prep_environment(job: Resource, dirs: NodeDirs) -> dict[str, str]:
    """AZ_BATCH_JOB_PREP_DIR and _WORKING_DIR, which every task of a job with a preparation sees."""
    prep = job.get("jobPreparationTask")
    if prep is None:
        return {}
    task_dir = dirs.task_dir(job["id"], prep["id"])
    return {"AZ_BATCH_JOB_PREP_DIR": str(task_dir), "AZ_BATCH_JOB_PREP_WORKING_DIR": str(task_dir / "wd")}


def _launch(sched: Scheduler, job: Resource, pool: Resource, node: Resource, *, retry: bool) -> None:
    emu = sched.emu
    prep = job["jobPreparationTask"]
    dirs = NodeDirs(Path(node["_root"]))
    now = iso(utcnow())
    relative = dirs.task_dir(job["id"], prep["id"]).relative_to(dirs.root).as_posix()
    statuses = job.setdefault("_prep", {})
    previous = statuses.get(node["id"], {}).get("jobPreparationTaskExecutionInfo", {})
    info: dict[str, Any] = {
        "startTime": now,
        "state": "running",
        "taskRootDirectory": relative,
        "taskRootDirectoryUrl": f"{node['url']}/files/{relative}",
        "retryCount": previous.get("retryCount", 0) + (1 if retry else 0),
    }
    if retry:
        info["lastRetryTime"] = now
    statuses[node["id"]] = {
        "poolId": pool["id"],
        "nodeId": node["id"],
        "nodeUrl": node["url"],
        "jobPreparationTaskExecutionInfo": info,
    }
    emu.state.touch(job)
    env = {e["name"]: e.get("value", "") for e in job.get("commonEnvironmentSettings", [])}
    env.update({e["name"]: e.get("value", "") for e in prep.get("environmentSettings", [])})
    env.update(prep_environment(job, dirs))
    constraints = prep["constraints"]
    wall = parse_duration(constraints["maxWallClockTime"])
    max_retries = constraints.get("maxTaskRetryCount", 0)
    key = (job["id"].lower(), KEY_PREFIX + node["id"])
    spec = AttemptSpec(
        account_name=emu.config.account_name,
        account_url=emu.url,
        pool_id=pool["id"],
        job_id=job["id"],
        task_id=prep["id"],
        node_id=node["id"],
        dedicated=node["isDedicated"],
        dirs=dirs,
        command_line=prep["commandLine"],
        environment=env,
        resource_files=prep.get("resourceFiles", []),
        output_files=[],
        container=prep.get("containerSettings"),
        container_runtime=emu.config.container_runtime,
        podman_args=emu.config.podman_args,
        final_if_failed=max_retries != -1 and info["retryCount"] >= max_retries,
        deadline=time.monotonic() + wall if wall < NO_LIMIT_SECONDS else None,
        identities=node_identities(pool, emu.config.identity_storage),
        extra={"key": key, "slots": 0},
    )
    sched.launch(key, pool, node, spec)


def record_prep(
    sched: Scheduler, attempt: RunningAttempt, outcome: Outcome, pool: Resource, node: Resource
) -> None:
    """How a preparation attempt ended, under the state lock: retried, completed, or forgotten (an
    interrupted run is run again when the node is back)."""
    spec = attempt.spec
    job = sched.emu.state.jobs.get(spec.job_id.lower())
    if job is None:
        return
    statuses = job.setdefault("_prep", {})
    status = statuses.get(spec.node_id)
    reason = attempt.stop_reason
    if status is None or reason == "delete":
        return
    if reason in ("requeue", "preempt", "shutdown"):
        del statuses[spec.node_id]
        sched.emu.state.touch(job)
        return
    info = status["jobPreparationTaskExecutionInfo"]
    if outcome.exit_code is not None:
        info["exitCode"] = outcome.exit_code
    if outcome.container_id:
        info["containerInfo"] = {"containerId": outcome.container_id, "state": "exited"}
    failure: dict[str, Any] | None = None
    if reason == "terminate":
        failure = {"category": "usererror", "code": "TaskEnded", "message": "Task Was Ended by User Request"}
    elif reason == "wallclock":
        failure = {
            "category": "usererror",
            "code": "MaxWallClockTimeExceeded",
            "message": "The task ran longer than its maxWallClockTime and was terminated.",
        }
    elif outcome.failure is not None:
        failure = outcome.failure  # a pre-processing error: not retried
    elif outcome.exit_code != 0:
        max_retries = job["jobPreparationTask"]["constraints"].get("maxTaskRetryCount", 0)
        if (max_retries == -1 or info["retryCount"] < max_retries) and job["state"] == "active":
            _launch(sched, job, pool, node, retry=True)
            return
        failure = {
            "category": "usererror",
            "code": "FailureExitCode",
            "message": "The task exited with an exit code representing a failure",
        }
    info.update(state="completed", endTime=iso(utcnow()), result="failure" if failure else "success")
    if failure:
        info["failureInfo"] = failure
    sched.emu.state.touch(job)


def forget_node(emu: Emulator, node_id: str, *, rebooted: bool) -> None:
    """A node that is new (preempted, then back) or booted again: which preparations run again."""
    for job in emu.state.jobs.values():
        statuses = job.get("_prep", {})
        status = statuses.get(node_id)
        if status is None:
            continue
        info = status["jobPreparationTaskExecutionInfo"]
        rerun = job.get("jobPreparationTask", {}).get("rerunOnNodeRebootAfterSuccess", True)
        if not rebooted or info["state"] != "completed" or rerun:
            del statuses[node_id]
            emu.state.changed()


@handles("Jobs_ListJobPreparationAndReleaseTaskStatus")
def list_preparation_status(emu: Emulator, req: Request) -> Response:
    job = find_job(emu, req.params["jobId"])
    if "jobPreparationTask" not in job:
        raise BatchApiError(409, "JobPreparationTaskNotSpecified")
    items = sorted(job.get("_prep", {}).items())
    return list_page(emu, req, "BatchJobPreparationAndReleaseTaskStatus", items)
