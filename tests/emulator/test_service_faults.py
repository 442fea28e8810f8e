"""Faults the service really has, driven with the real SDK: an answer lost after the request took
effect, a connection reset before it did, a slow answer, and pool resize errors. Each test checks
what the client sees, and what is true on the service side afterwards."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import (
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from shardrun.emulator import Emulator, FaultConfig
from shardrun.emulator.faults import Faults

from .conftest import client_for, error_of, make_job, make_pool, start_emulator, wait_for

CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError)


def faults_off(emu: Emulator, **rates: Any) -> None:
    """Switch the injected faults to new rates (0 for the names given) from now on."""
    emu.faults.config = dataclasses.replace(emu.faults.config, **rates)


def group(*ids: str) -> bm.BatchTaskGroup:
    return bm.BatchTaskGroup(
        task_values=[bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ids]
    )


def test_lost_answers_were_applied_so_resubmitting_finds_them() -> None:
    emu = start_emulator(faults=FaultConfig(seed=2, drop_response_rate=1.0))
    try:
        client = client_for(emu)  # the SDK's own retry policy, as users run it
        with pytest.raises(ServiceResponseError):
            make_pool(client, nodes=0)
        with pytest.raises(ServiceResponseError):
            make_job(client)
        with pytest.raises(ServiceResponseError):
            client.create_task("job1", bm.BatchTaskCreateOptions(id="t1", command_line="/bin/true"))
        with pytest.raises(ServiceResponseError):
            client.create_task_collection("job1", group("t2", "t3"))
        assert emu.faults.drops == 4  # POSTs are not retried by azure-core after a lost answer
        faults_off(emu, drop_response_rate=0.0)
        # A client that resubmits learns that every create took effect.
        assert error_of(lambda: make_pool(client, nodes=0)).error.code == "PoolExists"
        assert error_of(lambda: make_job(client)).error.code == "JobExists"
        error = error_of(
            lambda: client.create_task("job1", bm.BatchTaskCreateOptions(id="t1", command_line="/bin/true"))
        )
        assert error.status_code == 409 and error.error.code == "TaskExists"
        results = client.create_task_collection("job1", group("t2", "t3", "t4")).result_values
        outcome = {r.task_id: (r.status, r.error.code if r.error else None) for r in results}
        assert outcome == {
            "t2": ("clienterror", "TaskExists"),
            "t3": ("clienterror", "TaskExists"),
            "t4": ("success", None),
        }
        assert client.get_pool("pool1").id == "pool1"
    finally:
        emu.stop()


def test_reset_connections_had_no_effect() -> None:
    emu = start_emulator(faults=FaultConfig(seed=2, reset_rate=1.0))
    try:
        client = client_for(emu, retry_total=0)
        with pytest.raises(CONNECTION_ERRORS):
            make_pool(client, nodes=0)
        with pytest.raises(CONNECTION_ERRORS):
            client.get_pool("pool1")
        assert emu.faults.resets == 2
        faults_off(emu, reset_rate=0.0)
        with pytest.raises(ResourceNotFoundError):
            client.get_pool("pool1")  # the reset request never reached the service
        make_pool(client, nodes=0)  # so resubmitting simply creates it
        make_job(client)
        faults_off(emu, reset_rate=1.0)
        with pytest.raises(CONNECTION_ERRORS):
            client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        faults_off(emu, reset_rate=0.0)
        assert list(client.list_tasks("job1")) == []
    finally:
        emu.stop()


def test_reads_survive_resets_through_the_sdk_retries() -> None:
    emu = start_emulator(faults=FaultConfig(seed=1, reset_rate=0.25))
    try:
        faults_off(emu, reset_rate=0.0)
        client = client_for(emu, retry_backoff_factor=0.01)
        make_pool(client, nodes=0)
        faults_off(emu, reset_rate=0.25)
        for _ in range(10):  # GETs are idempotent: azure-core retries them after a reset
            assert client.get_pool("pool1").id == "pool1"
        assert emu.faults.resets > 0
    finally:
        emu.stop()


def test_slow_answer_times_out_but_the_request_was_applied() -> None:
    emu = start_emulator(faults=FaultConfig(seed=2, slow_rate=1.0, slow_seconds=1.0))
    try:
        impatient = client_for(emu, read_timeout=0.3)
        with pytest.raises(ServiceResponseTimeoutError):
            make_pool(impatient, nodes=0)
        # On a busy machine the emulator may only get to the request after the client gave up:
        # the fault is drawn once the request has taken effect, so wait for it before switching
        # the faults off (else the late request is answered at once and nothing was slowed).
        wait_for(lambda: emu.faults.slowed >= 1, what="the request to be handled and slowed")
        faults_off(emu, slow_rate=0.0)
        assert emu.faults.slowed == 1
        # The checks wait as long as a client usually does: on a loaded machine even a prompt
        # answer can take more than 0.3 s, and a POST is not retried after a timeout.
        client = client_for(emu)
        assert client.get_pool("pool1").id == "pool1"
        assert error_of(lambda: make_pool(client, nodes=0)).error.code == "PoolExists"
    finally:
        emu.stop()


def _steady(client: BatchClient, pool_id: str = "pool1") -> bm.BatchPool:
    def check() -> bm.BatchPool | None:
        pool = client.get_pool(pool_id)
        return pool if pool.allocation_state == "steady" else None

    result: bm.BatchPool = wait_for(check, what="a steady pool")
    return result


def _values(error: bm.ResizeError) -> dict[str, str]:
    return {v.name: v.value for v in error.error_values or []}


@pytest.mark.parametrize(
    ("code", "dedicated", "spot"),
    [
        ("AccountCoreQuotaReached", 0, 2),
        ("AccountLowPriorityCoreQuotaReached", 2, 0),
        ("AllocationFailed", 0, 0),
        ("AllocationTimedOut", 0, 0),
    ],
)
def test_first_resize_fails_with_the_configured_error(code: str, dedicated: int, spot: int) -> None:
    emu = start_emulator(faults=FaultConfig(resize_error=code))
    try:
        client = client_for(emu)
        make_pool(client, nodes=2, spot=2)
        pool = _steady(client)
        assert [e.code for e in pool.resize_errors] == [code]
        error = pool.resize_errors[0]
        assert error.message and _values(error)["VmSize"] == "standard_d2s_v3"
        assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (2, 2)  # targets stay
        assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (dedicated, spot)
        if code == "AccountLowPriorityCoreQuotaReached":
            assert _values(error) == {
                "VmSize": "standard_d2s_v3",
                "TargetLowPriorityNodes": "2",
                "AllocatedLowPriorityNodes": "0",
            }
        if code == "AllocationTimedOut":
            assert _values(error)["ResizeTimeout"] == "PT15M"
        # The next resize is not the first: it succeeds, and clears the last resize's errors.
        client.begin_resize_pool(
            "pool1", bm.BatchPoolResizeOptions(target_dedicated_nodes=3, target_low_priority_nodes=3)
        ).result()
        pool = _steady(client)
        assert not pool.resize_errors
        assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (3, 3)
        assert emu.faults.resize_errors == 1
    finally:
        emu.stop()


def test_low_priority_quota_spares_dedicated_nodes_and_tasks_run_there() -> None:
    emu = start_emulator(faults=FaultConfig(resize_error="AccountLowPriorityCoreQuotaReached"))
    try:
        client = client_for(emu)
        make_pool(client, nodes=1, spot=0)  # no Spot node asked for: nothing for the code to stop
        assert not _steady(client).resize_errors
        client.begin_resize_pool(
            "pool1", bm.BatchPoolResizeOptions(target_dedicated_nodes=1, target_low_priority_nodes=2)
        ).result()
        pool = _steady(client)  # the first resize that needs Spot nodes is the one that fails
        assert pool.resize_errors[0].code == "AccountLowPriorityCoreQuotaReached"
        assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (1, 0)
        make_job(client)
        client.create_task("job1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        wait_for(lambda: client.get_task("job1", "t").state == "completed", what="task on the dedicated node")
    finally:
        emu.stop()


def test_faults_are_seeded_per_kind() -> None:
    def sequence(seed: int) -> list[Any]:
        faults = Faults(
            FaultConfig(
                seed=seed,
                reset_rate=0.3,
                drop_response_rate=0.3,
                slow_rate=0.3,
                slow_seconds=2.0,
                resize_error="AllocationFailed",
                resize_error_rate=0.5,
            )
        )
        out: list[Any] = []
        for _ in range(30):
            out += [faults.reset_connection(), faults.drop_response(), faults.response_delay()]
            out.append(faults.resize_error(first=False))
        return out

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)
    # A rate, when given, replaces "the first resize of each pool".
    faults = Faults(FaultConfig(resize_error="AllocationFailed"))
    assert faults.resize_error(first=True) == "AllocationFailed" and faults.resize_error(first=False) is None
    with pytest.raises(ValueError):
        FaultConfig(resize_error="NoSuchCode")


def test_the_command_line_flags_reach_the_fault_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import shardrun.emulator as package
    from shardrun.emulator.command import emulator_command

    handlers: dict[int, Any] = {}
    seen: list[Any] = []
    monkeypatch.setattr("signal.signal", lambda sig, handler: handlers.__setitem__(sig, handler))

    class FakeEmulator:
        url = "http://127.0.0.1:1"

        def __init__(self, config: Any) -> None:
            seen.append(config)

        def __enter__(self) -> FakeEmulator:
            handlers[15](15, None)  # as if SIGTERM came at once
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(package, "Emulator", FakeEmulator, raising=False)
    flags = [
        "--reset-rate",
        "0.1",
        "--drop-response-rate",
        "0.2",
        "--slow-rate",
        "0.3",
        "--slow-seconds",
        "4",
    ]
    flags += ["--resize-error", "AccountLowPriorityCoreQuotaReached", "--resize-error-rate", "0.5"]
    result = CliRunner().invoke(emulator_command, ["--port", "0", *flags])
    assert result.exit_code == 0, result.output
    faults = seen[0].faults
    assert (faults.reset_rate, faults.drop_response_rate, faults.slow_rate, faults.slow_seconds) == (
        0.1,
        0.2,
        0.3,
        4,
    )
    assert (faults.resize_error, faults.resize_error_rate) == ("AccountLowPriorityCoreQuotaReached", 0.5)
    result = CliRunner().invoke(emulator_command, ["--resize-error", "NoSuchCode"])
    assert result.exit_code == 2
    result = CliRunner().invoke(emulator_command, ["--resize-error-rate", "0.5"])
    assert result.exit_code == 2 and "needs --resize-error" in result.output
