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


def dependencies_met(task: Resource, tasks: dict[str, Resource]) -> bool:
    depends = task.get("dependsOn")
    if not depends:
        return True
    wanted = [t.lower() for t in depends.get("taskIds", [])]
    for span in depends.get("taskIdRanges", []):
        wanted += [str(i) for i in range(span["start"], span["end"] + 1) if str(i) in tasks]
    for task_key in wanted:
        other = tasks.get(task_key)
        if (
            other is None
            or other["state"] != "completed"
            or other.get("_dependencyAction", "block") != "satisfy"
        ):
            return False
    return True


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
