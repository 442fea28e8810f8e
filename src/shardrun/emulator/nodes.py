"""Simulated compute nodes and the scheduler loop that drives them.

Every tick: pools being deleted are torn down; autoscale runs when due; each pool's nodes are grown
or shrunk towards its targets and moved through creating -> starting -> idle/running (or unusable,
or preempted); Spot nodes may be preempted (fault injection); jobs are completed or torn down; and
active tasks are placed on free task slots, where an `Attempt` runs them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .allocation import NodeAllocation
from .autoscale import Formula, FormulaError, Samples, decide
from .execution import Attempt, AttemptSpec, Outcome, RunningAttempt
from .exits import after_completion
from .jobs import set_state
from .placement import place_tasks, record_outcome
from .preparation import forget_node, is_prep_key, record_prep
from .simulate import SimulatedAttempt, Simulator
from .spec import parse_duration
from .state import Resource, iso, parse_iso, utcnow

if TYPE_CHECKING:
    from .server import Emulator

log = logging.getLogger("shardrun.emulator")


class Scheduler(NodeAllocation):
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.attempts: dict[
            tuple[str, str], tuple[RunningAttempt, Resource, Resource]
        ] = {}  # -> attempt, pool, node
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        config = emu.config
        self.simulator = (
            Simulator(config.simulate_seconds, config.simulate_seed, config.simulate_upload_workers)
            if config.simulate_seconds is not None
            else None
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        with self.emu.state.lock:
            self._recover()
        if self.simulator is not None:
            self.simulator.start()
        self._thread = threading.Thread(target=self._loop, name="batch-emulator-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self.emu.state.lock:
            running = [attempt for attempt, _, _ in self.attempts.values()]
        for attempt in running:
            attempt.stop("shutdown")
        for attempt in running:
            attempt.join(timeout=10)
        if self.simulator is not None:
            self.simulator.stop()

    def _recover(self) -> None:
        """After a restart from a folder: work that was running runs again; nodes boot again."""
        for _pool_key, nodes in self.emu.state.nodes.items():
            for node in nodes.values():
                if node["state"] in ("idle", "running", "creating", "starting", "preempted"):
                    self._node_state(node, "starting", delay=self.emu.config.node_start_seconds / 2)
                    node.pop("_prefetch", None)  # a node that boots again pulls its images again
                    forget_node(self.emu, node["id"], rebooted=True)
                node.update(runningTasksCount=0, runningTaskSlotsCount=0, _slots=0)
        for tasks in self.emu.state.tasks.values():
            for task in tasks.values():
                if task["state"] in ("running", "preparing"):
                    self._requeue(task, by_user=False)

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.emu.config.tick_seconds):
            now = time.monotonic()
            try:
                with self.emu.state.lock:
                    self.tick(now - last)
                self.emu.state.save_if_dirty()
            except Exception:
                log.exception("scheduler tick failed")
            last = now

    # -- the tick --------------------------------------------------------------------------------

    def tick(self, seconds: float) -> None:
        state = self.emu.state
        for key, pool in list(state.pools.items()):
            if pool["state"] == "deleting":
                if time.time() >= pool.get("_goneAt", 0.0):
                    self._tear_down_pool(key, pool)
                continue
            self._sample(pool)
            if pool.get("enableAutoScale") and time.time() >= pool.get("_nextEval", 0.0):
                self.autoscale_now(pool)
            self._reconcile(pool)
            self._advance_nodes(pool, seconds)
        self._check_deadlines()
        self._advance_jobs()
        self._place_tasks()

    # -- autoscale -------------------------------------------------------------------------------

    def _metrics(self, pool: Resource) -> dict[str, float]:
        counts = dict.fromkeys(("active", "running", "succeeded", "failed"), 0.0)
        for key, job in self.emu.state.jobs.items():
            if job["poolInfo"].get("poolId", "").lower() != pool["id"].lower() or job["state"] != "active":
                continue
            index = self.emu.state.index.job(key)
            for bucket in counts:
                counts[bucket] += index.count(bucket)
        preempted = sum(
            1 for n in self.emu.state.pool_nodes(pool["id"]).values() if n["state"] == "preempted"
        )
        return {
            "$ActiveTasks": counts["active"],
            "$RunningTasks": counts["running"],
            "$PendingTasks": counts["active"] + counts["running"],
            "$SucceededTasks": counts["succeeded"],
            "$FailedTasks": counts["failed"],
            "$PreemptedNodeCount": float(preempted),
        }

    def _sample(self, pool: Resource, force: bool = False) -> None:
        now = time.time()
        if not force and now - pool.get("_lastSample", 0.0) < self.emu.config.sample_seconds:
            return
        pool["_lastSample"] = now
        samples = pool.setdefault("_samples", {})
        for name, value in self._metrics(pool).items():
            history = samples.setdefault(name, [])
            history.append(value)
            del history[:-1000]

    def _inputs(self, pool: Resource) -> dict[str, Any]:
        if not pool.get("_samples"):
            self._sample(pool, force=True)
        period = self.emu.config.sample_seconds
        inputs: dict[str, Any] = {
            name: Samples(tuple(values), period) for name, values in pool["_samples"].items()
        }
        inputs["$CurrentDedicatedNodes"] = float(pool["currentDedicatedNodes"])
        inputs["$CurrentLowPriorityNodes"] = float(pool["currentLowPriorityNodes"])
        return inputs

    def evaluate(self, pool: Resource, formula: Formula, *, apply: bool) -> dict[str, Any]:
        """An AutoScaleRun for `formula`; with `apply`, the pool is resized to its result."""
        run: dict[str, Any] = {"timestamp": iso(utcnow())}
        try:
            decision = decide(
                formula, self._inputs(pool), (pool["targetDedicatedNodes"], pool["targetLowPriorityNodes"])
            )
        except FormulaError as exc:
            run["error"] = {
                "code": "AutoScalingFormulaEvaluationError"
                if not exc.syntax
                else "AutoScalingFormulaSyntaxError",
                "message": str(exc),
            }
            return run
        run["results"] = decision.results
        if apply and (decision.dedicated, decision.low_priority) != (
            pool["targetDedicatedNodes"],
            pool["targetLowPriorityNodes"],
        ):
            pool["targetDedicatedNodes"] = decision.dedicated
            pool["targetLowPriorityNodes"] = decision.low_priority
            pool["_deallocation"] = decision.deallocation
            self.resize_requested(pool)
        return run

    def autoscale_now(self, pool: Resource) -> None:
        pool["autoScaleRun"] = self.evaluate(pool, Formula(pool["autoScaleFormula"]), apply=True)
        pool["_nextEval"] = time.time() + parse_duration(pool["autoScaleEvaluationInterval"])
        self.emu.state.changed()

    # -- jobs and tasks --------------------------------------------------------------------------

    def terminate_job(self, job: Resource, reason: str) -> None:
        set_state(job, "terminating")
        job["executionInfo"]["terminateReason"] = reason
        for task in self.emu.state.job_tasks(job["id"]).values():
            self.stop_task(job, task, "terminate")
        self._stop_preparations(job, "terminate")
        self.emu.state.touch(job)

    def disable_job(self, job: Resource, option: str) -> None:
        set_state(job, "disabled")
        if option != "wait":
            for task in self.emu.state.job_tasks(job["id"]).values():
                self.stop_task(job, task, "requeue" if option == "requeue" else "terminate")

    def stop_task(self, job: Resource, task: Resource, reason: str) -> None:
        found = self.attempts.get((job["id"].lower(), task["id"].lower()))
        if found is not None:
            found[0].stop(reason)
        elif reason == "terminate" and task["state"] == "active" and job["state"] != "terminating":
            self.emu.state.index.move(task, "completed", result="failure")
            task["executionInfo"].update(
                endTime=iso(utcnow()),
                failureInfo={
                    "category": "usererror",
                    "code": "TaskEnded",
                    "message": "Task Was Ended by User Request",
                },
            )
            self.emu.state.touch(task)
            after_completion(self, job, task)

    def reactivate(self, task: Resource) -> None:
        self.emu.state.index.move(task, "active")  # counted as failed until now: result goes after
        task.pop("_dependencyAction", None)
        info = task["executionInfo"]
        for key in ("endTime", "exitCode", "failureInfo", "result", "startTime"):
            info.pop(key, None)
        info["retryCount"] = 0
        self.emu.state.touch(task)

    def _requeue(self, task: Resource, *, by_user: bool = True) -> None:
        """Back to active to run again. Only a user's request (a pool shrunk or nodes removed with
        `requeue`, a job disabled with `requeue`) counts in requeueCount, as the spec defines it; a
        preemption or a restart of the emulator reschedules the task without counting, and is not
        a retry either."""
        self.emu.state.index.move(task, "active")
        if by_user:
            info = task["executionInfo"]
            info["requeueCount"] = info.get("requeueCount", 0) + 1
            info["lastRequeueTime"] = iso(utcnow())
        self.emu.state.touch(task)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for attempt, _, _ in self.attempts.values():
            if (
                attempt.spec.deadline is not None
                and now >= attempt.spec.deadline
                and attempt.stop_reason is None
            ):
                attempt.stop("wallclock")

    def _advance_jobs(self) -> None:
        state = self.emu.state
        for key, job in list(state.jobs.items()):
            running = [attempt for (job_key, _), (attempt, _, _) in self.attempts.items() if job_key == key]
            if job["state"] == "deleting":
                for attempt in running:
                    attempt.stop("delete")  # tasks and preparations alike
                if not running:
                    del state.jobs[key]
                    state.tasks.pop(key, None)
                    state.index.drop_job(key)
                    state.changed()
            elif job["state"] == "terminating" and not running:
                set_state(job, "completed")
                job["executionInfo"]["endTime"] = iso(utcnow())
                state.touch(job)
            elif job["state"] == "active":
                limit = parse_duration(job["constraints"]["maxWallClockTime"])
                started = job["executionInfo"]["startTime"]
                if (utcnow() - parse_iso(started)).total_seconds() > limit:
                    self.terminate_job(job, "MaxWallClockTimeExpiry")
                elif job["onAllTasksComplete"] == "terminatejob" and not any(
                    state.index.job(key).count(bucket) for bucket in ("active", "running")
                ):
                    self.terminate_job(job, "AllTasksComplete")

    def _place_tasks(self) -> None:
        place_tasks(self)

    def launch(self, key: tuple[str, str], pool: Resource, node: Resource, spec: AttemptSpec) -> None:
        """Run an attempt: a task's ((job key, task key)) or a job preparation's (preparation.py)."""
        spec.extra["key"] = key
        attempt: RunningAttempt = (
            Attempt(spec, self._finished)
            if self.simulator is None
            else SimulatedAttempt(spec, self._finished, self.simulator)
        )
        self.attempts[key] = (attempt, pool, node)
        attempt.start()

    def _finished(self, attempt: RunningAttempt, outcome: Outcome) -> None:
        with self.emu.state.lock:
            key = attempt.spec.extra["key"]
            found = self.attempts.pop(key, None)
            if found is None:
                return
            if is_prep_key(key):
                record_prep(self, attempt, outcome, found[1], found[2])
            else:
                record_outcome(self, attempt, outcome, found[2])

    def _stop_preparations(self, job: Resource, reason: str) -> None:
        job_key = job["id"].lower()
        for key, (attempt, _, _) in list(self.attempts.items()):
            if key[0] == job_key and is_prep_key(key):
                attempt.stop(reason)
