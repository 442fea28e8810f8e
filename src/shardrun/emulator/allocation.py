"""A pool's nodes: growing and shrinking towards the targets (with injected resize errors), each
node's way through creating -> starting -> idle/running (or unusable, or preempted), and a container
pool's image prefetch at node start.

`NodeAllocation` is a part of the `Scheduler` (nodes.py), which calls it under the state lock.
"""

from __future__ import annotations

import copy
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .execution import RunningAttempt
from .faults import RESIZE_ERRORS, resize_error_stops
from .placement import SCHEDULABLE
from .prefetch import PrefetchError, needs_prefetch, prefetch
from .preparation import forget_node
from .state import Resource, iso, utcnow

if TYPE_CHECKING:
    from .server import Emulator

log = logging.getLogger("shardrun.emulator")


class NodeAllocation:
    emu: Emulator
    attempts: dict[tuple[str, str], tuple[RunningAttempt, Resource, Resource]]  # -> attempt, pool, node

    def resize_requested(self, pool: Resource) -> None:
        if pool["allocationState"] != "resizing":
            pool["allocationState"] = "resizing"
            pool["allocationStateTransitionTime"] = iso(utcnow())
        pool.pop("resizeErrors", None)  # they are the last resize's errors
        pool["_resizeFault"] = None  # drawn when this resize first needs nodes a fault can stop
        self._reconcile(pool)

    def stop_resize(self, pool: Resource) -> None:
        nodes = [n for n in self.emu.state.pool_nodes(pool["id"]).values() if n["state"] != "leavingpool"]
        pool["targetDedicatedNodes"] = sum(1 for n in nodes if n["isDedicated"])
        pool["targetLowPriorityNodes"] = sum(1 for n in nodes if not n["isDedicated"])
        self._reconcile(pool)

    def remove_nodes(self, pool: Resource, node_ids: list[str], option: str) -> None:
        nodes = self.emu.state.pool_nodes(pool["id"])
        for node_id in node_ids:
            node = nodes[node_id]
            key = "targetDedicatedNodes" if node["isDedicated"] else "targetLowPriorityNodes"
            pool[key] = max(0, pool[key] - 1)
            self._leave(pool, node, option)
        self.resize_requested(pool)

    def _reconcile(self, pool: Resource) -> None:
        nodes = self.emu.state.pool_nodes(pool["id"])
        short: list[tuple[str, int, int]] = []  # kinds a resize error keeps below target
        for dedicated, key in ((True, "targetDedicatedNodes"), (False, "targetLowPriorityNodes")):
            members = [
                n for n in nodes.values() if n["isDedicated"] == dedicated and n["state"] != "leavingpool"
            ]
            missing = pool[key] - len(members)
            if missing > 0 and self._resize_fails(pool, dedicated):
                short.append((key, pool[key], len(members)))
                missing = 0
            for _ in range(missing):
                node = self._new_node(pool, dedicated)
                nodes[node["id"]] = node
            if len(members) > pool[key]:
                # Shrink idle and unusable nodes first, then those running the fewest slots.
                members.sort(key=lambda n: (n["state"] in SCHEDULABLE, n.get("_slots", 0)))
                for node in members[: len(members) - pool[key]]:
                    self._leave(pool, node, pool.get("_deallocation", "requeue"))
        for node in list(nodes.values()):
            if node["state"] == "leavingpool" and node.get("_slots", 0) == 0:
                self._discard(nodes, node)
        pool["currentDedicatedNodes"] = sum(1 for n in nodes.values() if n["isDedicated"])
        pool["currentLowPriorityNodes"] = sum(1 for n in nodes.values() if not n["isDedicated"])
        if short and "resizeErrors" not in pool:
            pool["resizeErrors"] = [self._resize_error(pool, short)]
            self.emu.state.touch(pool)
        settled = not any(n["state"] == "leavingpool" for n in nodes.values())
        if pool["allocationState"] != "steady" and settled:
            pool["allocationState"] = "steady"
            pool["allocationStateTransitionTime"] = iso(utcnow())
            self.emu.state.touch(pool)

    def _resize_fails(self, pool: Resource, dedicated: bool) -> bool:
        """Whether an injected resize error keeps this resize from adding nodes of this kind. It is
        drawn once per resize, when the resize first needs nodes the configured code can stop."""
        code = self.emu.faults.config.resize_error
        if code is None or not resize_error_stops(code, dedicated):
            return False
        if pool.get("_resizeFault") is None:
            first = not pool.get("_resizeFaultDrawn", False)
            pool["_resizeFaultDrawn"] = True
            pool["_resizeFault"] = self.emu.faults.resize_error(first) or ""
            if pool["_resizeFault"]:
                log.info("resize of pool %s fails with %s (injected fault)", pool["id"], code)
        return bool(pool["_resizeFault"])

    @staticmethod
    def _resize_error(pool: Resource, short: list[tuple[str, int, int]]) -> dict[str, Any]:
        """A ResizeError (code, message, values) as the pool shows it once the resize has settled."""
        code = pool["_resizeFault"]
        values = [("VmSize", pool["vmSize"])]
        for key, target, allocated in short:
            kind = key.removeprefix("target")  # DedicatedNodes or LowPriorityNodes
            values += [(f"Target{kind}", str(target)), (f"Allocated{kind}", str(allocated))]
        if code == "AllocationTimedOut":
            values.append(("ResizeTimeout", pool.get("resizeTimeout", "PT15M")))
        return {
            "code": code,
            "message": RESIZE_ERRORS[code][0],
            "values": [{"name": name, "value": value} for name, value in values],
        }

    def _new_node(self, pool: Resource, dedicated: bool) -> Resource:
        node_id = f"tvmps_{uuid.uuid4().hex}{uuid.uuid4().hex}_{'d' if dedicated else 'p'}"
        now = iso(utcnow())
        image = pool.get("virtualMachineConfiguration", {}).get("imageReference", {})
        node: Resource = {
            "id": node_id,
            "url": f"{pool['url']}/nodes/{node_id}",
            "state": "creating",
            "schedulingState": "enabled",
            "stateTransitionTime": now,
            "lastBootTime": now,
            "allocationTime": now,
            "ipAddress": "127.0.0.1",
            "ipv6Address": "::1",
            "affinityId": f"TVM:{node_id}",
            "vmSize": pool["vmSize"],
            "totalTasksRun": 0,
            "runningTasksCount": 0,
            "runningTaskSlotsCount": 0,
            "totalTasksSucceeded": 0,
            "isDedicated": dedicated,
            "nodeAgentInfo": {"version": "1.12.0-shardrun-emulator", "lastUpdateTime": now},
            "virtualMachineInfo": {"imageReference": image},
            "_slots": 0,
            "_root": str(self.emu.disk_root / pool["id"] / node_id),
            "_due": time.time() + self.emu.config.node_start_seconds / 2,
            "_failsToStart": self.emu.faults.node_fails_to_start(),
        }
        self.emu.state.changed()
        return node

    @staticmethod
    def _node_state(node: Resource, state: str, delay: float | None = None) -> None:
        node["state"] = state
        node["stateTransitionTime"] = iso(utcnow())
        if delay is not None:
            node["_due"] = time.time() + delay

    def _leave(self, pool: Resource, node: Resource, option: str) -> None:
        if node["state"] == "leavingpool":
            return
        self._node_state(node, "leavingpool")
        if option in ("requeue", "terminate"):
            self._stop_node_tasks(node, "requeue" if option == "requeue" else "terminate")

    def _discard(self, nodes: dict[str, Resource], node: Resource) -> None:
        del nodes[node["id"]]
        shutil.rmtree(node["_root"], ignore_errors=True)  # task files vanish with the node
        self.emu.state.changed()

    def _stop_node_tasks(self, node: Resource, reason: str) -> None:
        for attempt, _, where in list(self.attempts.values()):
            if where is node:
                attempt.stop(reason)

    def _advance_nodes(self, pool: Resource, seconds: float) -> None:
        now = time.time()
        half = self.emu.config.node_start_seconds / 2
        for node in self.emu.state.pool_nodes(pool["id"]).values():
            state = node["state"]
            if state == "creating" and now >= node["_due"]:
                self._node_state(node, "starting", delay=half)
            elif state == "starting" and now >= node["_due"]:
                if node.get("_failsToStart"):
                    self._node_state(node, "unusable")
                    node["errors"] = [
                        {
                            "code": "NodeStartFailed",
                            "message": "The node failed to start (injected fault).",
                            "errorDetails": [],
                        }
                    ]
                    continue
                images = self._images(pool, node)
                if images == "failed":
                    self._node_state(node, "unusable")
                    node["errors"] = node.pop("_prefetchErrors", [])
                elif images == "ready":
                    self._node_state(node, "idle")
                    node["lastBootTime"] = iso(utcnow())
            elif state == "preempted" and now >= node["_due"]:
                node.pop("_prefetch", None)  # a new VM: it pulls the pool's images again
                forget_node(self.emu, node["id"], rebooted=False)  # and runs job preparations again
                self._node_state(node, "starting", delay=half)
            elif state == "running" and not node["isDedicated"] and self.emu.faults.should_preempt(seconds):
                log.info("preempting Spot node %s", node["id"])
                self._node_state(node, "preempted", delay=self.emu.faults.config.preempt_recover_seconds)
                self._stop_node_tasks(node, "preempt")

    def _images(self, pool: Resource, node: Resource) -> str:
        """'ready', 'pulling' or 'failed': a container pool's images on a starting node (podman)."""
        if self.emu.config.container_runtime != "podman" or not needs_prefetch(pool):
            return "ready"
        status = node.get("_prefetch")
        if status is None:
            node["_prefetch"] = "pulling"
            config = copy.deepcopy(pool["virtualMachineConfiguration"]["containerConfiguration"])
            thread = threading.Thread(
                target=self._pull, args=(node, config), name=f"prefetch-{node['id'][-12:]}", daemon=True
            )
            thread.start()
            return "pulling"
        return str(status)

    def _pull(self, node: Resource, config: dict[str, Any]) -> None:
        """In its own thread, without the lock: log in, pull, then record how it went."""
        errors: list[dict[str, Any]] = []
        try:
            prefetch(config, Path(node["_root"]), self.emu.config.podman_args)
        except PrefetchError as exc:
            errors = [exc.node_error()]
        except Exception as exc:  # a bug here must not leave the node starting forever
            log.exception("prefetch on node %s failed", node["id"])
            errors = [
                PrefetchError(
                    "The node could not prepare its container images.", [("Message", type(exc).__name__)]
                ).node_error()
            ]
        with self.emu.state.lock:
            if node.get("_prefetch") != "pulling":
                return  # the node was preempted or rebooted meanwhile
            node["_prefetch"] = "failed" if errors else "ready"
            if errors:
                node["_prefetchErrors"] = errors
                log.info("node %s is unusable: %s", node["id"], errors[0]["message"])
            self.emu.state.changed()

    def _tear_down_pool(self, key: str, pool: Resource) -> None:
        nodes = self.emu.state.pool_nodes(pool["id"])
        for node in list(nodes.values()):
            self._leave(pool, node, "requeue")
            if node.get("_slots", 0) == 0:
                self._discard(nodes, node)
        if not nodes:
            del self.emu.state.pools[key]
            self.emu.state.nodes.pop(key, None)
            self.emu.state.changed()
