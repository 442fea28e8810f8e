"""Task dependencies and exit conditions, as the spec defines them.

A task with `dependsOn` (`taskIds`, and `taskIdRanges` of integer IDs, both ends included) is not
scheduled until every task it depends on has completed with a `dependencyAction` of `satisfy`.

When a task completes, its `exitConditions` pick the `ExitOptions` that apply:
- an exit code listed in `exitCodes`, or inside one of `exitCodeRanges` (this wins over a file
  upload error that followed);
- else `preProcessingError` for a task that could not start (say, a resource file could not be
  downloaded), or `fileUploadError` for an output file upload that failed;
- else `default` for a non-zero exit code, or one of those errors whose own entry is absent.

An option's `dependencyAction` defaults to `satisfy` for exit code 0 and `block` for every other
exit condition, and its `jobAction` (used only when the job's `onTaskFailure` is
`performexitoptionsjobaction`) to `none` for exit code 0 and `terminate` otherwise: `terminate`
ends the job with terminateReason `TaskFailed`; `disable` disables it with `requeue`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .state import Resource

if TYPE_CHECKING:
    from .nodes import Scheduler

# Failure codes of a task that could not start: the pre-processing errors.
PRE_PROCESSING = frozenset(
    {
        "BlobNotFound",
        "BlobAccessDenied",
        "BlobDownloadMiscError",
        "BlobDownloadTimedOut",
        "ResourceFileCreateFailed",
        "CommandProgramNotFound",
        "CommandLaunchFailed",
    }
)


def dependencies_met(task: Resource, tasks: dict[str, Resource], epoch: int = 0) -> bool:
    """Whether every task `task` depends on has completed with dependencyAction satisfy. An ID of a
    range that names no task of the job is not waited for.

    The check resumes where the last one stopped (`_dependsCursor`), so a merge task that depends
    on a range of 100,000 tasks costs O(1) per completion, not O(range). `epoch` is the job's
    (taskindex.JobIndex.epoch): it changes when a task is added, deleted or leaves `completed`,
    and a cursor of another epoch starts again from the first dependency."""
    depends = task.get("dependsOn")
    if not depends:
        return True
    ids = depends.get("taskIds", [])
    ranges = depends.get("taskIdRanges", [])
    cursor = task.get("_dependsCursor")
    at_id, at_range, at_number = cursor[1:] if cursor and cursor[0] == epoch else (0, 0, None)
    while at_id < len(ids):
        if not _satisfied(tasks.get(ids[at_id].lower())):
            task["_dependsCursor"] = (epoch, at_id, 0, None)
            return False
        at_id += 1
    while at_range < len(ranges):
        span = ranges[at_range]
        start, end = span["start"], span["end"]
        if end - start + 1 > len(tasks):  # a range wider than the job: look at the job's tasks
            for key, other in tasks.items():
                if key.isdigit() and start <= int(key) <= end and not _satisfied(other):
                    task["_dependsCursor"] = (epoch, at_id, at_range, None)
                    return False
        else:
            number = start if at_number is None else at_number
            while number <= end:
                key = str(number)
                if key in tasks and not _satisfied(tasks[key]):
                    task["_dependsCursor"] = (epoch, at_id, at_range, number)
                    return False
                number += 1
        at_range, at_number = at_range + 1, None
    task["_dependsCursor"] = (epoch, at_id, at_range, None)
    return True


def _satisfied(other: Resource | None) -> bool:
    return (
        other is not None
        and other["state"] == "completed"
        and other.get("_dependencyAction", "block") == "satisfy"
    )


def _options(conditions: dict[str, Any], info: dict[str, Any]) -> dict[str, Any] | None:
    """The ExitOptions for how the task completed, or None where the defaults apply."""
    code = info.get("exitCode")
    failure = info.get("failureInfo") or {}
    if code is not None:
        for mapping in conditions.get("exitCodes", []):
            if mapping["code"] == code:
                return dict(mapping["exitOptions"])
        for span in conditions.get("exitCodeRanges", []):
            if span["start"] <= code <= span["end"]:
                return dict(span["exitOptions"])
    if failure.get("code") in PRE_PROCESSING and "preProcessingError" in conditions:
        return dict(conditions["preProcessingError"])
    if str(failure.get("code", "")).startswith("FileUpload") and "fileUploadError" in conditions:
        return dict(conditions["fileUploadError"])
    if failure or (code not in (None, 0)):
        return dict(conditions["default"]) if "default" in conditions else None
    return None


def completion_actions(task: Resource) -> tuple[str, str]:
    """(dependencyAction, jobAction) for a task that has just completed."""
    info = task["executionInfo"]
    clean = info.get("exitCode") == 0 and info.get("result") == "success"
    options = _options(task.get("exitConditions") or {}, info) or {}
    dependency = options.get("dependencyAction", "satisfy" if clean else "block")
    job_action = options.get("jobAction", "none" if clean else "terminate")
    return str(dependency), str(job_action)


def after_completion(sched: Scheduler, job: Resource, task: Resource) -> None:
    """Record what the task's completion means for its dependents, and act on the job if asked."""
    dependency, job_action = completion_actions(task)
    task["_dependencyAction"] = dependency
    if job.get("onTaskFailure") != "performexitoptionsjobaction" or job["state"] != "active":
        return
    if job_action == "terminate":
        sched.terminate_job(job, "TaskFailed")
    elif job_action == "disable":
        sched.disable_job(job, "requeue")
        sched.emu.state.touch(job)
