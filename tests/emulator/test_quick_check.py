"""The compiled quick check (fastjsonschema) and jsonschema give the same verdict on every body.

The quick check only lets valid bodies skip jsonschema, so a body it wrongly accepted would get past
the emulator unchecked. The bodies here are the spec's example requests, and thousands of
mutations of them: each property removed, an unknown one added, each value swapped for other
types and out-of-range values.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from shardrun.emulator.spec import BatchSpec, load_spec

EXAMPLES = Path(__file__).parent / "spec_examples"
ODD_VALUES: list[Any] = [None, True, 2**31, -(2**63) - 1, 1.5, "not a date", "", [], {}, [1], {"x": 1}]


URL = "http://127.0.0.1:10000/devstoreaccount1/run?sv=2025-01-05&sig=x"
# Bodies in the shape shardrun itself sends, with the parts the examples do not have.
OWN_BODIES: list[tuple[str, str, Any]] = [
    ("shardrun task", "BatchTaskCreateOptions", {
        "id": "task-00001", "displayName": "task-00001", "commandLine": "/bin/sh -c 'exec app'",
        "resourceFiles": [{"httpUrl": URL, "filePath": "in.txt"},
                          {"storageContainerUrl": URL, "blobPrefix": "config/", "filePath": "cfg"}],
        "outputFiles": [{"filePattern": "out.txt", "destination": {"container": {
            "containerUrl": URL, "path": "outputs/task-00001/out.txt"}},
            "uploadOptions": {"uploadCondition": "tasksuccess"}}],
        "environmentSettings": [{"name": "SHARDRUN_TASK_ID", "value": "task-00001"}],
        "constraints": {"maxWallClockTime": "PT1H", "retentionTime": "P1D", "maxTaskRetryCount": 2},
        "containerSettings": {"imageName": "registry.local/app:1", "containerRunOptions": "--rm",
                              "workingDirectory": "taskWorkingDirectory"},
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
        "requiredSlots": 1,
    }),
    ("shardrun job", "BatchJobCreateOptions", {
        "id": "run-261130-abcdef", "priority": 0, "usesTaskDependencies": False,
        "constraints": {"maxWallClockTime": "PT12H", "maxTaskRetryCount": 2},
        "poolInfo": {"poolId": "run-261130-abcdef"}, "onAllTasksComplete": "noaction",
        "metadata": [{"name": "shardrun.run", "value": "run-261130-abcdef"}],
    }),
]


def _example_bodies(spec: BatchSpec) -> Iterator[tuple[str, str, Any]]:
    yield from OWN_BODIES
    for path in sorted(EXAMPLES.glob("*.json")):
        example = json.loads(path.read_text())
        op = next(o for o in spec.operations if o.operation_id == example["operationId"])
        params = spec.raw["paths"][op.template][op.method.lower()]["parameters"]
        body_param = next((p for p in params if p.get("in") == "body"), None)
        if body_param and op.body_definition and body_param["name"] in example["parameters"]:
            yield path.name, op.body_definition, example["parameters"][body_param["name"]]


def _places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _places(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _places(value, (*path, i))


def _mutations(body: Any) -> Iterator[Any]:
    for path, node in _places(body):
        if isinstance(node, dict):
            for key in node:
                yield _changed(body, path, lambda d, k=key: d.pop(k))
            yield _changed(body, path, lambda d: d.__setitem__("unknownProperty", 1))
        if path:
            for odd in ODD_VALUES:
                yield _changed(body, path[:-1], lambda parent, k=path[-1], v=odd: parent.__setitem__(k, v))


def _changed(body: Any, path: tuple[Any, ...], change: Any) -> Any:
    out = copy.deepcopy(body)
    target = out
    for step in path:
        target = target[step]
    change(target)
    return out


def _verdicts(spec: BatchSpec, definition: str, body: Any) -> tuple[bool, bool]:
    try:
        spec.quick_check(definition)(copy.deepcopy(body))
        quick = True
    except fastjsonschema.JsonSchemaException:
        quick = False
    full = next(iter(spec.validator(definition).iter_errors(body)), None) is None
    return quick, full


def test_quick_check_agrees_with_jsonschema_on_examples_and_mutations() -> None:
    spec = load_spec()
    checked = rejected = 0
    disagreements = []
    for name, definition, body in _example_bodies(spec):
        assert _verdicts(spec, definition, body) == (True, True), name
        for candidate in _mutations(body):
            quick, full = _verdicts(spec, definition, candidate)
            checked += 1
            rejected += not full
            if quick != full:
                disagreements.append(f"{name}: quick={quick} jsonschema={full}: {json.dumps(candidate)[:200]}")
    assert not disagreements, "\n".join(disagreements[:10])
    assert checked > 800 and rejected > checked // 2  # the mutations really did break bodies


def test_quick_check_never_fills_defaults_into_a_body() -> None:
    spec = load_spec()
    name, definition, body = next(b for b in _example_bodies(spec) if b[1] == "BatchPoolCreateOptions")
    before = copy.deepcopy(body)
    spec.quick_check(definition)(body)
    assert body == before, name


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_int32_bounds_hold_in_the_quick_check(value: int) -> None:
    spec = load_spec()
    task = {"id": "t", "commandLine": "/bin/true", "constraints": {"maxTaskRetryCount": value}}
    assert _verdicts(spec, "BatchTaskCreateOptions", task) == (False, False)
    task["constraints"]["maxTaskRetryCount"] = 3
    assert _verdicts(spec, "BatchTaskCreateOptions", task) == (True, True)
