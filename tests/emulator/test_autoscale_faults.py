"""Autoscale grows and shrinks a pool; injected faults are seeded and behave like the service's."""

from __future__ import annotations

from pathlib import Path

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from shardrun.emulator.autoscale import Formula, FormulaError, Samples, decide
from shardrun.emulator.faults import FaultConfig, Faults

from .conftest import client_for, error_of, make_job, make_pool, start_emulator, wait_for

GROW = (
    "$pending = max($PendingTasks.GetSample(1));"
    "$TargetDedicatedNodes = $pending > 0 ? min(3, $pending) : 0;"
    "$NodeDeallocationOption = taskcompletion;"
)


def test_formula_subset() -> None:
    samples = {"$ActiveTasks": Samples((4.0, 6.0, 8.0), 30.0), "$PreemptedNodeCount": Samples((1.0,), 30.0)}
    formula = Formula(
        "$avg = avg($ActiveTasks.GetSample(TimeInterval_Minute * 2));"
        "$TargetLowPriorityNodes = $PreemptedNodeCount.GetSample(1) > 0 ? 0 : 2;"
        "$TargetDedicatedNodes = max(1, min(10, $avg / 2)) + 2 * 3 - 6;"
    )
    decision = decide(formula, samples, (0, 0))
    assert (decision.dedicated, decision.low_priority, decision.deallocation) == (3, 0, "requeue")
    assert decision.results == (
        "$avg=6;$TargetLowPriorityNodes=0;$TargetDedicatedNodes=3;$NodeDeallocationOption=requeue"
    )
    # The user's own variables need no '$', as in the service's documentation and the classic guide.
    guide = Formula("maxNumberofVMs = 4; maxPendingTasks = $ActiveTasks.GetSample(1);"
                    "$TargetLowPriorityNodes = min(maxNumberofVMs, maxPendingTasks);"
                    "$NodeDeallocationOption = taskcompletion;")
    decision = decide(guide, samples, (0, 0))
    assert (decision.low_priority, decision.deallocation) == (4, "taskcompletion")
    for bad in ("$x = (1", "$x = 1 +", "taskcompletion = 1", "$x = foo(1)", "$x = undefined + 1"):
        try:
            decide(Formula(bad), {}, (0, 0))
        except FormulaError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_autoscale_grows_from_zero_to_n_and_back(tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the tasks run until the test has seen the pool at 3 nodes
    emu = start_emulator()
    try:
        client = client_for(emu)
        make_pool(
            client, enable_auto_scale=True, auto_scale_formula=GROW, auto_scale_evaluation_interval="PT1S"
        )
        assert client.get_pool("pool1").auto_scale_run.results.startswith(
            "$pending=0;$TargetDedicatedNodes=0"
        )
        make_job(client)
        wait_gate = f"/bin/sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done'"
        group = [bm.BatchTaskCreateOptions(id=f"t{i}", command_line=wait_gate) for i in range(5)]
        client.create_task_collection("job1", bm.BatchTaskGroup(task_values=group))
        try:
            wait_for(lambda: client.get_pool("pool1").current_dedicated_nodes == 3, what="pool grown to 3")
        finally:
            gate.touch()
        wait_for(lambda: client.get_job_task_counts("job1").task_counts.succeeded == 5, what="tasks done")
        wait_for(lambda: client.get_pool("pool1").current_dedicated_nodes == 0, what="pool back to 0")
        run = client.evaluate_pool_auto_scale(
            "pool1",
            bm.BatchPoolEvaluateAutoScaleOptions(
                auto_scale_formula="$TargetDedicatedNodes = 2 + $ActiveTasks.GetSample(1)"
            ),
        )
        assert run.results == "$TargetDedicatedNodes=2;$NodeDeallocationOption=requeue"
        assert client.get_pool("pool1").target_dedicated_nodes == 0  # evaluate does not apply
    finally:
        emu.stop()


def test_autoscale_errors_and_rules() -> None:
    emu = start_emulator(autoscale_enable_cooldown=30.0, autoscale_min_interval=300.0)
    try:
        c = client_for(emu, retry_total=0)
        make_pool(c, nodes=1)
        error = error_of(
            lambda: c.enable_pool_auto_scale(
                "pool1",
                bm.BatchPoolEnableAutoScaleOptions(
                    auto_scale_formula="$TargetDedicatedNodes = (", auto_scale_evaluation_interval="PT5M"
                ),
            )
        )
        assert error.status_code == 400 and error.error.code == "AutoScalingFormulaSyntaxError"
        error = error_of(
            lambda: c.enable_pool_auto_scale(
                "pool1",
                bm.BatchPoolEnableAutoScaleOptions(
                    auto_scale_formula="$TargetDedicatedNodes = 1", auto_scale_evaluation_interval="PT1M"
                ),
            )
        )
        assert error.error.code == "InvalidPropertyValue"  # the service's minimum is 5 minutes
        c.enable_pool_auto_scale(
            "pool1",
            bm.BatchPoolEnableAutoScaleOptions(
                auto_scale_formula="$TargetDedicatedNodes = 1", auto_scale_evaluation_interval="PT5M"
            ),
        )
        error = error_of(
            lambda: c.enable_pool_auto_scale(
                "pool1", bm.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes = 2")
            )
        )
        assert error.error.code == "TooManyEnableAutoScaleRequests"
        error = error_of(
            lambda: c.begin_resize_pool("pool1", bm.BatchPoolResizeOptions(target_dedicated_nodes=3))
        )
        assert error.status_code == 409
    finally:
        emu.stop()


def test_preempted_task_is_requeued_and_completes() -> None:
    # The node stays preempted for 2 s, so a poll sees it even on a busy machine.
    faults = FaultConfig(seed=1, preempt_rate=1000.0, max_preemptions=1, preempt_recover_seconds=2.0)
    emu = start_emulator(faults=faults)
    try:
        client = client_for(emu)
        make_pool(client, nodes=0, spot=1)
        make_job(client)
        client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/sleep 1"))
        wait_for(lambda: any(n.state == "preempted" for n in client.list_nodes("pool1")), what="preemption")
        assert emu.faults.preemptions == 1
        task = wait_for(
            lambda: (t := client.get_task("job1", "t")).state == "completed" and t, what="task done"
        )
        info = task.execution_info
        # requeueCount counts user requests only (the spec), and a preemption is not a retry either.
        assert info.result == "success" and info.requeue_count == 0 and info.last_requeue_time is None
        assert info.retry_count == 0
    finally:
        emu.stop()


def test_throttling_and_busy_answers() -> None:
    emu = start_emulator(faults=FaultConfig(seed=3, throttle_rate=0.3, busy_rate=0.3, retry_after_share=0.5))
    try:
        client = client_for(emu, retry_total=0)
        seen: dict[int, list[bool]] = {}
        for _ in range(60):
            try:
                response = client.send_request(HttpRequest("GET", "/pools?api-version=2025-06-01"))
            except HttpResponseError as error:
                response = error.response
                assert (
                    response.json()["code"]
                    == {429: "TooManyRequests", 503: "ServerBusy"}[response.status_code]
                )
            seen.setdefault(response.status_code, []).append("Retry-After" in response.headers)
        assert set(seen) == {200, 429, 503}
        faulted = seen[429] + seen[503]
        assert any(faulted) and not all(faulted)  # Retry-After on some of them only
        assert emu.faults.request_faults == len(faulted)
    finally:
        emu.stop()


def test_faults_are_seeded() -> None:
    def sequence(seed: int) -> list[str]:
        faults = Faults(FaultConfig(seed=seed, throttle_rate=0.2, busy_rate=0.2, node_start_failure_rate=0.5))
        out = []
        for _ in range(40):
            error = faults.request_fault()
            out.append("ok" if error is None else f"{error.status}{'+' if error.headers else ''}")
        return out + [str(faults.node_fails_to_start()) for _ in range(10)]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)


def test_node_that_fails_to_start_is_unusable() -> None:
    emu = start_emulator(faults=FaultConfig(node_start_failure_rate=1.0))
    try:
        client = client_for(emu)
        make_pool(client, nodes=1)
        node = wait_for(
            lambda: (n := list(client.list_nodes("pool1"))) and n[0].state == "unusable" and n[0],
            what="unusable node",
        )
        assert node.errors[0].code == "NodeStartFailed"
        make_job(client)
        client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        assert client.get_task("job1", "t").state == "active"  # nothing can run it
    finally:
        emu.stop()
