"""shardrun's one retry rule (providers/azure/retry.py) on the real SDKs: the Batch client against the
emulator's faults, the Blob client against Azurite behind a proxy that throttles and resets."""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from shardrun.core.errors import ShardrunError
from shardrun.emulator import Emulator
from shardrun.emulator.faults import FaultConfig
from shardrun.providers.azure.batch_account import JOB, POOL, create_owned
from shardrun.providers.azure.batch_monitor import BatchError, call
from shardrun.providers.azure.batch_submit import submit_tasks
from shardrun.providers.azure.batch_tasks import build_job, build_pool
from shardrun.providers.azure.blob import open_blob_store
from shardrun.providers.azure.retry import AzureRetryPolicy, RetryRule
from shardrun.providers.azure.settings import BatchSection

from .fixtures.azurite import DEV_KEY, Azurite
from .fixtures.emulator import start_emulator

FAST = RetryRule(first_wait=0.02, max_wait=0.1, budget=60.0)


def test_waits_are_bounded_jittered_and_honour_retry_after() -> None:
    rule = RetryRule(tries=5, first_wait=1.0, max_wait=4.0, max_retry_after=10.0, budget=100.0)
    for tries in range(1, 5):
        ceiling = min(4.0, 2.0 ** (tries - 1))
        waits = {rule.wait(tries, 0.0, None) for _ in range(50)}
        assert all(w is not None and ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jitter: clients throttled together do not come back together
    assert rule.wait(5, 0.0, None) is None  # the tries are spent
    assert rule.wait(1, 0.0, 3.0) == 3.0  # Retry-After, as the service asked
    assert rule.wait(1, 0.0, 99.0) == 10.0  # ... but never longer than max_retry_after
    assert rule.wait(1, 99.9, None) is None  # the time budget is spent
    assert RetryRule().wait(1, 0.0, None) is not None and RetryRule().tries > 1


def batch(emu: Emulator, rule: RetryRule = FAST, **policy: Any) -> BatchClient:
    return BatchClient(emu.url, AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key),
                       **{**rule.client_options(), **({"retry_policy": AzureRetryPolicy(rule, **policy)}
                                                      if policy else {})})


def settings(emu: Emulator) -> BatchSection:
    return BatchSection(account_url=emu.url, dedicated_nodes=1)


def task_bodies(n: int) -> list[bm.BatchTaskCreateOptions]:
    return [bm.BatchTaskCreateOptions(id=f"task-{i:05d}", command_line="/bin/true") for i in range(1, n + 1)]


def create_and_fill(emu: Emulator, client: BatchClient, run_id: str, n: int) -> None:
    """What the backend does, through the same functions: pool, job, tasks, terminatejob."""
    pool = build_pool(settings(emu), "pool-1", run_id, None, None)
    create_owned(client, POOL, "pool-1", run_id, lambda: client.create_pool(pool))
    job = build_job("job-1", "pool-1", run_id, settings(emu), 1)
    create_owned(client, JOB, "job-1", run_id, lambda: client.create_job(job))
    report = submit_tasks(client, "job-1", task_bodies(n), group=lambda c: bm.BatchTaskGroup(task_values=c))
    assert report.ok and report.added + report.already_existed == n
    update = bm.BatchJobUpdateOptions(all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB)
    call(lambda: client.update_job("job-1", update), "update job job-1")


def added_once(emu: Emulator, n: int) -> bool:
    listed = [t.id for t in batch(emu).list_tasks("job-1", select=["id"])]
    return sorted(listed) == [t.id for t in task_bodies(n)]


@pytest.fixture
def faulty() -> Iterator[list[Emulator]]:
    started: list[Emulator] = []
    yield started
    for emu in started:
        emu.stop()


def test_throttling_without_retry_after_no_longer_reaches_creates_or_task_collections(
    faulty: list[Emulator],
) -> None:
    # azure-core alone retries a POST or PATCH only on 500/503/504 or with Retry-After.
    # Half the answers are 429 and a fifth 503, none with Retry-After: every request meets some.
    emu = start_emulator(faults=FaultConfig(seed=5, throttle_rate=0.5, busy_rate=0.2, retry_after_share=0.0))
    faulty.append(emu)
    create_and_fill(emu, batch(emu, RetryRule(tries=20, first_wait=0.01, max_wait=0.05)), "run-1", 300)
    assert added_once(emu, 300)
    assert emu.faults.request_faults >= 8


def test_a_lost_answer_is_sent_again_and_the_exists_it_gets_counts_as_done(faulty: list[Emulator]) -> None:
    emu = start_emulator(faults=FaultConfig(seed=3, drop_response_rate=0.35, reset_rate=0.1))
    faulty.append(emu)
    create_and_fill(emu, batch(emu), "run-1", 300)
    assert added_once(emu, 300)
    assert emu.faults.drops >= 2 and emu.faults.resets >= 1


def test_a_pool_of_another_run_is_not_taken_for_ours(faulty: list[Emulator]) -> None:
    emu = start_emulator()
    faulty.append(emu)
    client = batch(emu)
    pool = build_pool(settings(emu), "pool-1", "run-a", None, None)
    assert create_owned(client, POOL, "pool-1", "run-a", lambda: client.create_pool(pool)) is None
    again = create_owned(client, POOL, "pool-1", "run-a", lambda: client.create_pool(pool))
    assert again is not None and again.id == "pool-1"  # ours already: carry on
    other = build_pool(settings(emu), "pool-1", "run-b", None, None)
    with pytest.raises(BatchError, match="pool pool-1 already exists and belongs to run run-a, not to run run-b"):
        create_owned(client, POOL, "pool-1", "run-b", lambda: client.create_pool(other))


def test_once_the_tries_are_spent_the_error_names_the_operation_and_the_tries(faulty: list[Emulator]) -> None:
    emu = start_emulator(faults=FaultConfig(seed=1, throttle_rate=1.0, retry_after_share=0.0))
    faulty.append(emu)
    client = batch(emu, RetryRule(tries=4, first_wait=0.02, max_wait=0.05))
    pool = build_pool(settings(emu), "pool-1", "run-1", None, None)
    with pytest.raises(BatchError) as info:
        create_owned(client, POOL, "pool-1", "run-1", lambda: client.create_pool(pool))
    assert re.fullmatch(r"Azure Batch could not create pool pool-1 after 4 tries over \d+ s: "
                        r"TooManyRequests .*", str(info.value)), info.value
    assert emu.faults.request_faults == 4  # bounded: exactly the tries, never more


def test_retry_after_is_waited_as_asked_and_backoff_is_used_without_it(faulty: list[Emulator]) -> None:
    emu = start_emulator(faults=FaultConfig(seed=2, throttle_rate=1.0, retry_after_share=0.5,
                                            retry_after_seconds=7))
    faulty.append(emu)
    waits: list[float] = []
    client = batch(emu, RetryRule(tries=9, first_wait=0.2, max_wait=0.4, budget=1000.0), sleep=waits.append)
    with pytest.raises(HttpResponseError):
        list(client.list_pools())
    assert len(waits) == 8
    assert all(w == 7.0 or 0.1 <= w <= 0.4 for w in waits), waits
    assert 7.0 in waits and any(w != 7.0 for w in waits)


# -- Blob Storage: the same rule in the storage SDK's pipeline ------------------------------------

class FaultProxy(ThreadingHTTPServer):
    """Forwards HTTP to Azurite; the first requests get the faults in `plan` instead: an HTTP status
    (429/503, no Retry-After) or 'reset' (the connection is reset, no answer)."""

    daemon_threads = True

    def __init__(self, target_port: int, plan: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.target_port = target_port
        self.plan = plan
        self.faults = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/devstoreaccount1"

    def next_fault(self) -> str | None:
        with self.lock:
            if self.plan:
                self.faults += 1
                return self.plan.pop(0)
        return None


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.next_fault()
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if fault is not None:
            self.send_response(int(fault))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=30)
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


@pytest.fixture
def proxies(azurite: Azurite) -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.shutdown()
        proxy.server_close()


def proxy(azurite: Azurite, plan: list[str], started: list[FaultProxy]) -> FaultProxy:
    server = FaultProxy(int(azurite.account_url.split(":")[2].split("/")[0]), plan)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started.append(server)
    return server


def test_the_blob_client_retries_throttling_and_resets_with_the_same_rule(
    azurite: Azurite, proxies: list[FaultProxy],
) -> None:
    server = proxy(azurite, ["429", "reset", "503", "429"], proxies)
    store = open_blob_store(account_url=server.url, account_key=DEV_KEY, retries=5)
    key = f"rt-{uuid.uuid4().hex[:10]}/config/c.json"
    store.put_bytes(key, b'{"x": 1}')  # the container's creation meets the faults first
    assert store.get_bytes(key) == b'{"x": 1}'
    assert server.faults == 4


def test_the_blob_client_gives_up_after_its_tries_and_says_so(
    azurite: Azurite, proxies: list[FaultProxy],
) -> None:
    server = proxy(azurite, ["503"] * 100, proxies)
    store = open_blob_store(account_url=server.url, account_key=DEV_KEY, retries=2)
    with pytest.raises(ShardrunError, match=r"answered 503 .*after 3 tries over \d+ s"):
        store.put_bytes(f"rt-{uuid.uuid4().hex[:10]}/config/c.json", b"x")
    assert server.faults == 3
