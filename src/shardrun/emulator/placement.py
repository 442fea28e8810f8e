"""Placing active tasks on free task slots, and recording how an attempt ended.

The outcome rules are the service's: a non-zero exit is retried up to maxTaskRetryCount (-1: no
limit); a task that could not start, or whose output files failed to upload, is not retried; a task
stopped by a node leaving or a preemption runs again (only a user's requeue counts in
requeueCount); a terminated or timed-out task completes with a failure.
"""

from __future__ import annotations

import functools
import heapq
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .execution import AttemptSpec, NodeDirs, Outcome, RunningAttempt
from .exits import after_completion, dependencies_met
from .identity import node_identities
from .preparation import node_allows, prep_environment
from .spec import parse_duration
from .state import Resource, iso, utcnow
from .taskindex import JobIndex, next_ready

if TYPE_CHECKING:
    from .nodes import Scheduler

SCHEDULABLE = ("idle", "running")
RECENT_TASKS = 10
NO_LIMIT_SECONDS = 10 * 365 * 86400.0  # longer than this is the service's "unlimited"


def node_dirs(node: Resource) -> NodeDirs:
    return NodeDirs(Path(node["_root"]))


def _choose(nodes: list[Resource], need: int, slots: int, fill: str) -> Resource | None:
    fits = [n for n in nodes if slots - n["_slots"] >= need]
    if not fits:
        return None
    if fill == "pack":
        return min(fits, key=lambda n: slots - n["_slots"])
    return max(fits, key=lambda n: slots - n["_slots"])


def _met(task: Resource, tasks: dict[str, Resource], index: JobIndex) -> bool:
    return dependencies_met(task, tasks, index.epoch)


def place_tasks(sched: Scheduler) -> None:
    """Place ready tasks on free slots, jobs by priority. Each job's ready tasks come off its index
    (taskindex.py) in the order they were added, so a tick costs what it places, not the job's size."""
    state = sched.emu.state
    jobs = sorted(
        (j for j in state.jobs.values() if j["state"] == "active"),
        key=lambda j: (-j.get("priority", 0), j.get("_order", 0)),
    )
    for job in jobs:
        pool = state.pools.get(job["poolInfo"]["poolId"].lower())
        if pool is None or pool["state"] != "active":
            continue
        slots = pool.get("taskSlotsPerNode", 1)
        tasks = state.job_tasks(job["id"])
        index = state.index.job(job["id"].lower())
        met = functools.partial(_met, tasks=tasks, index=index)
        if next_ready(index, tasks, met) is None:
            continue
        # A node runs the job's preparation before the job's first task there (preparation.py).
        nodes = [
            n
            for n in state.pool_nodes(pool["id"]).values()
            if n["state"] in SCHEDULABLE
            and n["schedulingState"] == "enabled"
            and node_allows(sched, job, pool, n, start=slots - n["_slots"] > 0)
        ]
        free = sum(slots - n["_slots"] for n in nodes)
        limit = job.get("maxParallelTasks", -1)
        running = index.count("running")
        fill = pool.get("taskSchedulingPolicy", {}).get("nodeFillType", "spread")
        unplaced: list[tuple[int, str]] = []  # ready, but no node has the slots they need
        while free > 0 and (limit < 0 or running < limit):
            task = next_ready(index, tasks, met)
            if task is None:
                break
            entry = heapq.heappop(index.ready)
            need = task.get("requiredSlots", 1)
            node = _choose(nodes, need, slots, fill)
            if node is None:
                unplaced.append(entry)
                continue
            _start(sched, job, task, pool, node)
            free -= need
            running += 1
        for entry in unplaced:
            heapq.heappush(index.ready, entry)


def _start(sched: Scheduler, job: Resource, task: Resource, pool: Resource, node: Resource) -> None:
    emu = sched.emu
    now = iso(utcnow())
    dirs = node_dirs(node)
    task_dir = dirs.task_dir(job["id"], task["id"])
    info = task["executionInfo"]
    for key in ("endTime", "exitCode", "result", "failureInfo", "containerInfo"):
        info.pop(key, None)
    info["startTime"] = now
    if task.pop("_retryPending", False):
        info["lastRetryTime"] = now
    emu.state.index.move(task, "running")
    relative = task_dir.relative_to(dirs.root).as_posix()
    task["nodeInfo"] = {
        "affinityId": node["affinityId"],
        "nodeUrl": node["url"],
        "poolId": pool["id"],
        "nodeId": node["id"],
        "taskRootDirectory": relative,
        "taskRootDirectoryUrl": f"{node['url']}/files/{relative}",
    }
    task["_dir"] = str(task_dir)
    need = task.get("requiredSlots", 1)
    node["_slots"] += need
    node["runningTasksCount"] += 1
    node["runningTaskSlotsCount"] += need
    if node["state"] == "idle":
        node["state"] = "running"
        node["stateTransitionTime"] = now
    emu.state.touch(task)
    constraints = task["constraints"]
    max_retries = constraints.get("maxTaskRetryCount", 0)
    wall = parse_duration(constraints.get("maxWallClockTime", "P10675199D"))
    env = {e["name"]: e.get("value", "") for e in job.get("commonEnvironmentSettings", [])}
    env.update({e["name"]: e.get("value", "") for e in task.get("environmentSettings", [])})
    env.update(prep_environment(job, dirs))
    spec = AttemptSpec(
        account_name=emu.config.account_name,
        account_url=emu.url,
        pool_id=pool["id"],
        job_id=job["id"],
        task_id=task["id"],
        node_id=node["id"],
        dedicated=node["isDedicated"],
        dirs=dirs,
        command_line=task["commandLine"],
        environment=env,
        resource_files=task.get("resourceFiles", []),
        output_files=task.get("outputFiles", []),
        container=task.get("containerSettings"),
        container_runtime=emu.config.container_runtime,
        podman_args=emu.config.podman_args,
        final_if_failed=max_retries != -1 and info["retryCount"] >= max_retries,
        deadline=time.monotonic() + wall if wall < NO_LIMIT_SECONDS else None,
        identities=node_identities(pool, emu.config.identity_storage),
        extra={"slots": need},
    )
    sched.launch((job["id"].lower(), task["id"].lower()), pool, node, spec)


def record_outcome(sched: Scheduler, attempt: RunningAttempt, outcome: Outcome, node: Resource) -> None:
    """Free the slots and move the task on, under the state lock."""
    state = sched.emu.state
    spec = attempt.spec
    need = spec.extra["slots"]
    node["_slots"] -= need
    node["runningTasksCount"] -= 1
    node["runningTaskSlotsCount"] -= need
    if node["state"] == "running" and node["_slots"] == 0:
        node["state"] = "idle"
        node["stateTransitionTime"] = iso(utcnow())
    state.changed()
    task = state.job_tasks(spec.job_id).get(spec.task_id.lower())
    reason = attempt.stop_reason
    if task is None or reason == "delete":
        return
    if reason in ("requeue", "preempt", "shutdown"):
        sched._requeue(task, by_user=reason == "requeue")
        return
    info = task["executionInfo"]
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
        failure = outcome.failure
    elif outcome.exit_code != 0:
        max_retries = task["constraints"].get("maxTaskRetryCount", 0)
        if max_retries == -1 or info["retryCount"] < max_retries:
            info["retryCount"] += 1
            task["_retryPending"] = True
            state.index.move(task, "active")
            state.touch(task)
            return
        failure = {
            "category": "usererror",
            "code": "FailureExitCode",
            "message": "The task exited with an exit code representing a failure",
        }
    info["endTime"] = iso(utcnow())
    if failure:
        info["failureInfo"] = failure
    state.index.move(task, "completed", result="failure" if failure else "success")
    state.touch(task)
    job = state.jobs.get(spec.job_id.lower())
    if job is not None:
        after_completion(sched, job, task)
    node["totalTasksRun"] += 1
    if not failure:
        node["totalTasksSucceeded"] += 1
    recent = node.setdefault("recentTasks", [])
    recent.append(
        {
            "taskUrl": task["url"],
            "jobId": spec.job_id,
            "taskId": spec.task_id,
            "taskState": "completed",
            "executionInfo": dict(info),
        }
    )
    del recent[:-RECENT_TASKS]
