"""Pool and compute node operations."""

from __future__ import annotations

import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from .api import Request, Response, check_conditions, check_id, get_one, handles, list_page
from .autoscale import Formula, FormulaError
from .errors import BatchApiError, bad_property, exists, not_found
from .identity import assigned_ids, check_registries
from .spec import parse_duration
from .state import Resource, iso, utcnow

if TYPE_CHECKING:
    from .server import Emulator

DEFAULT_RESIZE_TIMEOUT = "PT15M"
DEFAULT_AUTOSCALE_INTERVAL = "PT15M"


def find_pool(emu: Emulator, pool_id: str) -> Resource:
    pool = emu.state.pools.get(pool_id.lower())
    if pool is None:
        raise not_found("Pool", pool_id)
    return pool


def _writable(pool: Resource) -> None:
    if pool["state"] == "deleting":
        raise BatchApiError(409, "PoolBeingDeleted")


def _formula(text: str) -> Formula:
    try:
        return Formula(text)
    except FormulaError as exc:
        raise BatchApiError(400, "AutoScalingFormulaSyntaxError", values=[("Reason", str(exc))]) from None


def _interval(emu: Emulator, text: str | None) -> str:
    value = text or DEFAULT_AUTOSCALE_INTERVAL
    seconds = parse_duration(value)
    if seconds < emu.config.autoscale_min_interval or seconds > 168 * 3600:
        raise bad_property(
            "autoScaleEvaluationInterval",
            value,
            f"must be between {emu.config.autoscale_min_interval:g} seconds and 168 hours",
        )
    return value


@handles("Pools_CreatePool")
def create_pool(emu: Emulator, req: Request) -> Response:
    pool = add_pool(emu, req.base_url, req.body)
    return Response(201, resource=pool, data_service_id=pool["url"])


def add_pool(
    emu: Emulator, base_url: str, body: dict[str, Any], identity: dict[str, Any] | None = None
) -> Resource:
    """A new pool from a checked BatchPoolCreateOptions body. Only the management plane gives a pool
    an `identity` (management.py); the data plane has no such property."""
    check_id("id", body["id"])
    if body["id"].lower() in emu.state.pools:
        raise exists("Pool")
    if "virtualMachineConfiguration" not in body:
        raise BatchApiError(
            400, "MissingRequiredProperty", values=[("PropertyName", "virtualMachineConfiguration")]
        )
    containers = body["virtualMachineConfiguration"].get("containerConfiguration") or {}
    check_registries(containers.get("containerRegistries", []), assigned_ids({"identity": identity}))
    autoscale = bool(body.get("enableAutoScale"))
    if autoscale:
        if "autoScaleFormula" not in body:
            raise BatchApiError(
                400,
                "InvalidAutoScalingSettings",
                values=[("Reason", "autoScaleFormula is required when enableAutoScale is true")],
            )
        if "targetDedicatedNodes" in body or "targetLowPriorityNodes" in body:
            raise BatchApiError(
                400,
                "InvalidAutoScalingSettings",
                values=[
                    ("Reason", "targetDedicatedNodes and targetLowPriorityNodes cannot be set with autoscale")
                ],
            )
        _formula(body["autoScaleFormula"])
    now = iso(utcnow())
    pool: Resource = {
        "id": body["id"],
        "url": f"{base_url}/pools/{urllib.parse.quote(body['id'], safe='')}",
        "creationTime": now,
        "state": "active",
        "stateTransitionTime": now,
        "allocationState": "steady",
        "allocationStateTransitionTime": now,
        "resizeTimeout": DEFAULT_RESIZE_TIMEOUT,
        "currentDedicatedNodes": 0,
        "currentLowPriorityNodes": 0,
        "targetDedicatedNodes": 0,
        "targetLowPriorityNodes": 0,
        "enableAutoScale": autoscale,
        "enableInterNodeCommunication": False,
        "taskSlotsPerNode": 1,
        "taskSchedulingPolicy": {"nodeFillType": "spread"},
    }
    pool.update({k: v for k, v in body.items() if k != "id"})
    if identity is not None:
        pool["identity"] = identity
    if autoscale:
        pool["autoScaleEvaluationInterval"] = _interval(emu, body.get("autoScaleEvaluationInterval"))
    emu.state.pools[pool["id"].lower()] = pool
    emu.state.pool_nodes(pool["id"])
    emu.state.touch(pool)
    if autoscale:
        emu.scheduler.autoscale_now(pool)
    else:
        _set_targets(
            emu, pool, body.get("targetDedicatedNodes", 0), body.get("targetLowPriorityNodes", 0), "requeue"
        )
    return pool


def _set_targets(emu: Emulator, pool: Resource, dedicated: int, low_priority: int, option: str) -> None:
    if dedicated < 0 or low_priority < 0:
        raise bad_property("targetDedicatedNodes", min(dedicated, low_priority), "must not be negative")
    pool["targetDedicatedNodes"] = dedicated
    pool["targetLowPriorityNodes"] = low_priority
    pool["_deallocation"] = option
    emu.scheduler.resize_requested(pool)


@handles("Pools_GetPool")
def get_pool(emu: Emulator, req: Request) -> Response:
    return get_one(emu, req, "BatchPool", find_pool(emu, req.params["poolId"]))


@handles("Pools_PoolExists")
def pool_exists(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=False)
    return Response(200, resource=pool)


@handles("Pools_ListPools")
def list_pools(emu: Emulator, req: Request) -> Response:
    return list_page(emu, req, "BatchPool", list(emu.state.pools.items()))


@handles("Pools_DeletePool")
def delete_pool(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=True)
    if pool["state"] != "deleting":
        pool["state"] = "deleting"
        pool["stateTransitionTime"] = iso(utcnow())
        pool["_goneAt"] = time.time() + emu.config.pool_delete_seconds
        emu.state.touch(pool)
    return Response(202)


@handles("Pools_UpdatePool")
def update_pool(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=True)
    _writable(pool)
    for key, value in req.body.items():
        pool[key] = value
    emu.state.touch(pool)
    return Response(200, resource=pool, data_service_id=pool["url"])


@handles("Pools_ResizePool")
def resize_pool(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=True)
    _writable(pool)
    if pool.get("enableAutoScale"):
        raise BatchApiError(
            409,
            "OperationInvalidForCurrentState",
            values=[("Reason", "the pool has autoscale enabled; disable it before resizing")],
        )
    if pool["allocationState"] != "steady":
        raise BatchApiError(409, "PoolBeingResized")
    body = req.body
    if "resizeTimeout" in body:
        pool["resizeTimeout"] = body["resizeTimeout"]
    _set_targets(
        emu,
        pool,
        body.get("targetDedicatedNodes", pool["targetDedicatedNodes"]),
        body.get("targetLowPriorityNodes", pool["targetLowPriorityNodes"]),
        body.get("nodeDeallocationOption", "requeue"),
    )
    emu.state.touch(pool)
    return Response(202, resource=pool, data_service_id=pool["url"])


@handles("Pools_StopPoolResize")
def stop_resize(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=True)
    _writable(pool)
    if pool["allocationState"] == "resizing":
        emu.scheduler.stop_resize(pool)
        emu.state.touch(pool)
    return Response(202, resource=pool, data_service_id=pool["url"])


@handles("Pools_EnablePoolAutoScale")
def enable_autoscale(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=True)
    _writable(pool)
    last = pool.get("_lastEnable", 0.0)
    if time.time() - last < emu.config.autoscale_enable_cooldown:
        raise BatchApiError(
            503,
            "TooManyEnableAutoScaleRequests",
            values=[
                (
                    "Reason",
                    f"enable autoscale calls on one pool must be "
                    f"{emu.config.autoscale_enable_cooldown:g}s apart",
                )
            ],
        )
    body = req.body
    formula = body.get("autoScaleFormula", pool.get("autoScaleFormula"))
    if not formula:
        raise BatchApiError(
            400, "InvalidAutoScalingSettings", values=[("Reason", "autoScaleFormula is required")]
        )
    _formula(formula)
    pool["autoScaleEvaluationInterval"] = _interval(
        emu, body.get("autoScaleEvaluationInterval", pool.get("autoScaleEvaluationInterval"))
    )
    pool["autoScaleFormula"] = formula
    pool["enableAutoScale"] = True
    pool["_lastEnable"] = time.time()
    emu.scheduler.autoscale_now(pool)
    emu.state.touch(pool)
    return Response(200, resource=pool, data_service_id=pool["url"])


@handles("Pools_DisablePoolAutoScale")
def disable_autoscale(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    _writable(pool)
    pool["enableAutoScale"] = False
    for key in ("autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun"):
        pool.pop(key, None)
    emu.state.touch(pool)
    return Response(200, resource=pool, data_service_id=pool["url"])


@handles("Pools_EvaluatePoolAutoScale")
def evaluate_autoscale(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    if not pool.get("enableAutoScale"):
        raise BatchApiError(
            409,
            "OperationInvalidForCurrentState",
            values=[("Reason", "enable autoscale on the pool before evaluating a formula")],
        )
    run = emu.scheduler.evaluate(pool, _formula(req.body["autoScaleFormula"]), apply=False)
    return Response(200, run, data_service_id=pool["url"])


@handles("Pools_RemoveNodes")
def remove_nodes(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    check_conditions(req, pool, write=True)
    _writable(pool)
    if pool.get("enableAutoScale"):
        raise BatchApiError(
            409, "OperationInvalidForCurrentState", values=[("Reason", "the pool has autoscale enabled")]
        )
    nodes = emu.state.pool_nodes(pool["id"])
    for node_id in req.body["nodeList"]:
        if node_id not in nodes:
            raise not_found("Node", node_id)
    emu.scheduler.remove_nodes(pool, req.body["nodeList"], req.body.get("nodeDeallocationOption", "requeue"))
    emu.state.touch(pool)
    return Response(202, resource=pool, data_service_id=pool["url"])


@handles("Nodes_ListNodes")
def list_nodes(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    return list_page(emu, req, "BatchNode", list(emu.state.pool_nodes(pool["id"]).items()))


@handles("Nodes_GetNode")
def get_node(emu: Emulator, req: Request) -> Response:
    pool = find_pool(emu, req.params["poolId"])
    node = emu.state.pool_nodes(pool["id"]).get(req.params["nodeId"])
    if node is None:
        raise not_found("Node", req.params["nodeId"])
    body = emu.spec.select(
        "BatchNode", {k: v for k, v in node.items() if not k.startswith("_")}, req.query.get("$select")
    )
    return Response(200, body)


@handles("Pools_ListPoolNodeCounts")
def node_counts(emu: Emulator, req: Request) -> Response:
    """Counts per pool, listed like any other list: `$filter` (e.g. `poolId eq 'x'`), `maxresults`
    and `odata.nextLink` paging."""
    states = emu.spec.definitions["BatchNodeCounts"]["properties"]
    names = {k.lower(): k for k in states}
    items = []
    for key, pool in emu.state.pools.items():
        counts = {"dedicated": dict.fromkeys(states, 0), "lowPriority": dict.fromkeys(states, 0)}
        for node in emu.state.pool_nodes(key).values():
            bucket = counts["dedicated" if node["isDedicated"] else "lowPriority"]
            bucket[names.get(node["state"].lower(), "unknown")] += 1
            bucket["total"] += 1
        items.append((key, {"poolId": pool["id"], **counts}))
    return list_page(emu, req, "BatchPoolNodeCounts", items)
