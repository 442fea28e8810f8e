"""A stand-in for the one management-plane operation the data plane cannot do: a pool with identities.

At the service, a pool gets user-assigned managed identities only when it is created through the
Batch management plane (Azure Resource Manager, `Microsoft.Batch/batchAccounts/pools`); the data
plane's `BatchPoolCreateOptions` has no `identity`. So the emulator also answers, on the same port:

    PUT    /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Batch/batchAccounts/{a}/pools/{pool}
    GET    (the same path)
    DELETE (the same path)

with api-version 2024-07-01 or 2025-06-01 and the ARM `Pool` body (`identity` with
`userAssignedIdentities` keyed by resource ID; `properties` with `vmSize`,
`deploymentConfiguration.virtualMachineConfiguration`, `scaleSettings` (`fixedScale` or
`autoScale`), `taskSlotsPerNode`, `taskSchedulingPolicy`, `interNodeCommunication`, `metadata`,
`displayName`). Other ARM properties give 400. The pool is then an ordinary data-plane pool whose
`identity` the data plane shows. Errors have ARM's shape: `{"error": {"code", "message"}}`.

Unlike ARM, this accepts the account's Shared Key (or, with --dev-auth, any bearer token): there is
no Entra ID here. A PUT on an existing pool is refused (409 `PoolExists`) rather than updating it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .api import Response
from .errors import BatchApiError
from .identity import identity_ids, pool_identity
from .pools import add_pool
from .state import Resource

if TYPE_CHECKING:
    from .server import Emulator

API_VERSIONS = ("2024-07-01", "2025-06-01")
POOL_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.Batch"
    r"/batchAccounts/(?P<account>[^/]+)/pools/(?P<pool>[^/]+)/?$",
    re.IGNORECASE,
)
_STRING = {"type": "string"}
_CLOSED = {"type": "object", "additionalProperties": False}
_SCHEMA: dict[str, Any] = {
    **_CLOSED,
    "properties": {
        "identity": {
            **_CLOSED,
            "required": ["type"],
            "properties": {
                "type": {"enum": ["UserAssigned", "None"]},
                "userAssignedIdentities": {"type": "object", "additionalProperties": {"type": "object"}},
            },
        },
        "properties": {
            **_CLOSED,
            "properties": {
                "displayName": _STRING,
                "vmSize": _STRING,
                "deploymentConfiguration": {
                    **_CLOSED,
                    "required": ["virtualMachineConfiguration"],
                    "properties": {"virtualMachineConfiguration": {"type": "object"}},
                },
                "scaleSettings": {
                    **_CLOSED,
                    "maxProperties": 1,
                    "properties": {
                        "fixedScale": {
                            **_CLOSED,
                            "properties": {
                                "targetDedicatedNodes": {"type": "integer", "minimum": 0},
                                "targetLowPriorityNodes": {"type": "integer", "minimum": 0},
                                "resizeTimeout": _STRING,
                                "nodeDeallocationOption": {
                                    "enum": ["Requeue", "Terminate", "TaskCompletion", "RetainedData"]
                                },
                            },
                        },
                        "autoScale": {
                            **_CLOSED,
                            "required": ["formula"],
                            "properties": {"formula": _STRING, "evaluationInterval": _STRING},
                        },
                    },
                },
                "taskSlotsPerNode": {"type": "integer"},
                "taskSchedulingPolicy": {
                    **_CLOSED,
                    "required": ["nodeFillType"],
                    "properties": {"nodeFillType": {"enum": ["Spread", "Pack"]}},
                },
                "interNodeCommunication": {"enum": ["Enabled", "Disabled"]},
                "metadata": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(_SCHEMA)


def is_management_path(raw_path: str) -> bool:
    return raw_path.lower().startswith("/subscriptions/")


def handle(
    emu: Emulator, method: str, raw_path: str, query: dict[str, list[str]], body: bytes, base_url: str
) -> Response:
    """Answer one management-plane request, under the state lock."""
    match = POOL_PATH.match(raw_path)
    if match is None:
        return _error(404, "NotFound", "The emulator's management stand-in serves Batch pools only.")
    version = (query.get("api-version") or [""])[0]
    if version not in API_VERSIONS:
        return _error(
            400, "InvalidApiVersionParameter", f"api-version must be one of {', '.join(API_VERSIONS)}."
        )
    if match["account"].lower() != emu.config.account_name.lower():
        return _error(404, "ResourceNotFound", f"The Batch account {match['account']} was not found.")
    pool = emu.state.pools.get(match["pool"].lower())
    if method == "GET":
        if pool is None:
            return _error(404, "ResourceNotFound", f"The pool {match['pool']} was not found.")
        return Response(200, arm_view(pool, match.group(0).rstrip("/")))
    if method == "DELETE":
        if pool is None:
            return Response(204)
        if pool["state"] != "deleting":
            pool["state"] = "deleting"
            emu.state.touch(pool)
        return Response(200)
    if method != "PUT":
        return _error(405, "MethodNotAllowed", f"{method} is not supported on a pool.")
    try:
        created = _create(emu, match, _json(body), base_url)
    except BatchApiError as error:
        reason = "; ".join(f"{k}: {v}" for k, v in error.values)
        return _error(error.status, error.code, f"{error.message} {reason}".strip())
    return Response(200, arm_view(created, match.group(0).rstrip("/")))


def _create(emu: Emulator, match: re.Match[str], body: Any, base_url: str) -> Resource:
    if not isinstance(body, dict):
        raise BatchApiError(400, "InvalidRequestBody", values=[("Reason", "the body must be a JSON object")])
    problem = best_match(_VALIDATOR.iter_errors(body))
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(body)"
        raise BatchApiError(400, "InvalidRequestBody", values=[("Reason", f"{where}: {problem.message}")])
    if match["pool"].lower() in emu.state.pools:
        raise BatchApiError(409, "PoolExists")
    props = body.get("properties", {})
    data_plane = _data_plane_body(match["pool"], props)
    emu.spec.validate_body("BatchPoolCreateOptions", data_plane)
    identity = None
    identities = body.get("identity", {})
    if identities.get("type") == "UserAssigned":
        ids = list(identities.get("userAssignedIdentities") or {})
        if not ids:
            raise BatchApiError(
                400, "InvalidRequestBody", values=[("Reason", "UserAssigned needs userAssignedIdentities")]
            )
        identity = pool_identity(ids)
    return add_pool(emu, base_url, data_plane, identity)


def _data_plane_body(pool_id: str, props: dict[str, Any]) -> dict[str, Any]:
    """The same pool as a data-plane BatchPoolCreateOptions body (ARM's enums are capitalized)."""
    vm = dict(props.get("deploymentConfiguration", {}).get("virtualMachineConfiguration", {}))
    if "nodeAgentSkuId" in vm:
        vm["nodeAgentSKUId"] = vm.pop("nodeAgentSkuId")  # the one property the two planes spell apart
    containers = vm.get("containerConfiguration")
    if isinstance(containers, dict) and isinstance(containers.get("type"), str):
        vm["containerConfiguration"] = {**containers, "type": _lower_first(containers["type"])}
    body: dict[str, Any] = {"id": pool_id, "virtualMachineConfiguration": vm}
    for key in ("vmSize", "displayName", "taskSlotsPerNode", "metadata"):
        if key in props:
            body[key] = props[key]
    if "taskSchedulingPolicy" in props:
        body["taskSchedulingPolicy"] = {"nodeFillType": props["taskSchedulingPolicy"]["nodeFillType"].lower()}
    if "interNodeCommunication" in props:
        body["enableInterNodeCommunication"] = props["interNodeCommunication"] == "Enabled"
    scale = props.get("scaleSettings", {})
    if "autoScale" in scale:
        body["enableAutoScale"] = True
        body["autoScaleFormula"] = scale["autoScale"]["formula"]
        if "evaluationInterval" in scale["autoScale"]:
            body["autoScaleEvaluationInterval"] = scale["autoScale"]["evaluationInterval"]
    else:
        fixed = scale.get("fixedScale", {})
        body["targetDedicatedNodes"] = fixed.get("targetDedicatedNodes", 0)
        body["targetLowPriorityNodes"] = fixed.get("targetLowPriorityNodes", 0)
        if "resizeTimeout" in fixed:
            body["resizeTimeout"] = fixed["resizeTimeout"]
    return body


def arm_view(pool: Resource, resource_id: str) -> dict[str, Any]:
    """The pool as ARM shows it: name, type, id, etag, identity (keyed by resource ID) and properties."""
    if pool.get("enableAutoScale"):
        scale = {"autoScale": {"formula": pool["autoScaleFormula"]}}
        scale["autoScale"]["evaluationInterval"] = pool["autoScaleEvaluationInterval"]
    else:
        scale = {
            "fixedScale": {
                "targetDedicatedNodes": pool["targetDedicatedNodes"],
                "targetLowPriorityNodes": pool["targetLowPriorityNodes"],
                "resizeTimeout": pool["resizeTimeout"],
            }
        }
    vm = copy.deepcopy(pool["virtualMachineConfiguration"])
    vm["nodeAgentSkuId"] = vm.pop("nodeAgentSKUId")
    containers = vm.get("containerConfiguration")
    if isinstance(containers, dict) and "type" in containers:
        vm["containerConfiguration"] = {**containers, "type": _upper_first(containers["type"])}
        for registry in vm["containerConfiguration"].get("containerRegistries", []):
            registry.pop("password", None)  # a secret: never sent back
    props: dict[str, Any] = {
        "provisioningState": "Deleting" if pool["state"] == "deleting" else "Succeeded",
        "provisioningStateTransitionTime": pool["stateTransitionTime"],
        "allocationState": _upper_first(pool["allocationState"]),
        "allocationStateTransitionTime": pool["allocationStateTransitionTime"],
        "creationTime": pool["creationTime"],
        "lastModified": pool["lastModified"],
        "vmSize": pool["vmSize"],
        "deploymentConfiguration": {"virtualMachineConfiguration": vm},
        "scaleSettings": scale,
        "taskSlotsPerNode": pool["taskSlotsPerNode"],
        "taskSchedulingPolicy": {"nodeFillType": _upper_first(pool["taskSchedulingPolicy"]["nodeFillType"])},
        "interNodeCommunication": "Enabled" if pool["enableInterNodeCommunication"] else "Disabled",
        "currentDedicatedNodes": pool["currentDedicatedNodes"],
        "currentLowPriorityNodes": pool["currentLowPriorityNodes"],
    }
    for key in ("displayName", "metadata"):
        if key in pool:
            props[key] = pool[key]
    view: dict[str, Any] = {
        "id": resource_id,
        "name": pool["id"],
        "type": "Microsoft.Batch/batchAccounts/pools",
        "etag": f'W/"{pool["eTag"]}"',
        "properties": props,
    }
    identity = pool.get("identity")
    if identity:
        view["identity"] = {
            "type": identity["type"],
            "userAssignedIdentities": {
                i["resourceId"]: identity_ids(i["resourceId"]) for i in identity["userAssignedIdentities"]
            },
        }
    return view


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise BatchApiError(400, "InvalidRequestBody", values=[("Reason", "the body is not JSON")]) from None


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]
