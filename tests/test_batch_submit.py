"""Bulk submission against a fake Batch client that misbehaves the ways the service does."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

pytest.importorskip("azure.batch")
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from shardrun.core.errors import ShardrunError
from shardrun.providers.azure.batch_submit import make_chunks, submit_tasks, task_size


class Code:
    def __init__(self, code: str) -> None:
        self.code = code


def http_error(status: int, code: str) -> HttpResponseError:
    err = HttpResponseError(message=f"{status} {code}")
    err.status_code = status
    err.reason = code
    err.error = Code(code)  # type: ignore[assignment]
    return err


class FakeBatch:
    """Adds tasks to a dict; can throttle, fail tasks with servererror, reject big bodies."""

    def __init__(self, *, throttle: int = 0, server_errors: float = 0.0, max_tasks: int = 100,
                 seed: int = 1, fatal: str | None = None) -> None:
        self.added: dict[str, int] = {}
        self.requests = 0
        self.throttle = throttle
        self.server_errors = server_errors
        self.max_tasks = max_tasks
        self.fatal = fatal
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def create_task_collection(self, job_id: str, task_collection: Any, **_: Any) -> Any:
        values = task_collection.task_values
        with self.lock:
            self.requests += 1
            if self.fatal:
                raise http_error(403, self.fatal)
            if len(values) > 100:
                raise AssertionError("more than 100 tasks in one request")
            if self.throttle > 0:
                self.throttle -= 1
                raise http_error(429, "TooManyRequests")
            if len(values) > self.max_tasks:
                raise http_error(413, "RequestBodyTooLarge")
            results = []
            for t in values:
                if self.rng.random() < self.server_errors:
                    results.append(models.BatchTaskCreateResult(
                        status="servererror", task_id=t.id, error=models.BatchError(code="ServerBusy")))
                elif t.id in self.added:
                    results.append(models.BatchTaskCreateResult(
                        status="clienterror", task_id=t.id, error=models.BatchError(code="TaskExists")))
                else:
                    self.added[t.id] = self.added.get(t.id, 0) + 1
                    results.append(models.BatchTaskCreateResult(status="success", task_id=t.id))
            self.rng.shuffle(results)  # the service answers in any order
            return models.BatchCreateTaskCollectionResult(result_values=results)


def tasks(n: int, payload: int = 10) -> list[models.BatchTaskCreateOptions]:
    return [models.BatchTaskCreateOptions(id=f"task-{i:05d}", command_line="x" * payload)
            for i in range(1, n + 1)]


def group(chunk: list[Any]) -> models.BatchTaskGroup:
    return models.BatchTaskGroup(task_values=chunk)


def test_chunks_respect_count_and_size_limits() -> None:
    small = make_chunks(tasks(250))
    assert [len(c) for c in small] == [100, 100, 50]
    big = tasks(30, payload=100_000)
    chunks = make_chunks(big)
    assert all(sum(task_size(t) for t in c) <= 1_000_000 for c in chunks)
    assert [t.id for c in chunks for t in c] == [t.id for t in big]  # order kept
    assert len(chunks) == 4


def test_plain_submission_adds_every_task_once() -> None:
    fake = FakeBatch()
    report = submit_tasks(fake, "job", tasks(1000), group=group)
    assert report.ok and report.added == 1000 and report.requests == 10
    assert set(fake.added.values()) == {1}


def test_server_errors_are_retried_in_bounded_rounds() -> None:
    fake = FakeBatch(server_errors=0.3)
    sleeps: list[float] = []
    report = submit_tasks(fake, "job", tasks(500), group=group, sleep=sleeps.append, max_rounds=10)
    assert report.ok and report.added == 500 and len(fake.added) == 500
    assert report.rounds > 1 and sleeps == [min(2**i, 30.0) for i in range(report.rounds - 1)]


def test_gives_up_after_max_rounds_and_names_the_tasks() -> None:
    fake = FakeBatch(server_errors=1.0)
    report = submit_tasks(fake, "job", tasks(3), group=group, sleep=lambda s: None, max_rounds=3)
    assert not report.ok
    assert report.failed == {f"task-0000{i}": "gave up after 3 rounds: ServerBusy" for i in (1, 2, 3)}
    assert fake.requests == 3


def test_task_exists_on_resubmission_counts_as_success() -> None:
    fake = FakeBatch()
    submit_tasks(fake, "job", tasks(120), group=group)
    again = submit_tasks(fake, "job", tasks(150), group=group)
    assert again.ok and again.already_existed == 120 and again.added == 30


def test_a_whole_request_failing_for_good_stops_the_submission_once() -> None:
    # Whole-request throttling is retried by the client's policy (tests/test_azure_retry.py runs
    # it against the emulator); what still fails after it is not sent again in another round.
    fake = FakeBatch(throttle=1000)
    with pytest.raises(ShardrunError, match="could not add 100 tasks to job job: TooManyRequests"):
        submit_tasks(fake, "job", tasks(100), group=group, sleep=lambda s: None)
    assert fake.requests == 1


def test_too_large_requests_are_halved() -> None:
    fake = FakeBatch(max_tasks=30)
    report = submit_tasks(fake, "job", tasks(100), group=group)
    assert report.ok and report.added == 100
    assert report.requests == 1 + 2 + 4  # 100 -> 50+50 -> 25 x 4


def test_other_errors_stop_with_a_clear_message() -> None:
    with pytest.raises(ShardrunError, match="could not add 5 tasks to job job: AuthenticationFailed"):
        submit_tasks(FakeBatch(fatal="AuthenticationFailed"), "job", tasks(5), group=group)


def test_tasks_from_a_generator_are_built_only_a_few_chunks_ahead_of_the_requests() -> None:
    """A job of many tasks never holds every SDK task model at once: submission takes the tasks
    as it sends them, at most two chunks per worker ahead."""
    fake = FakeBatch()
    made = 0
    ahead: list[int] = []

    def lazy(n: int) -> Any:
        nonlocal made
        for t in tasks(n):
            made += 1
            ahead.append(made - len(fake.added))
            yield t

    report = submit_tasks(fake, "job", lazy(3000), group=group, concurrency=2)
    assert report.ok and report.added == 3000 and len(fake.added) == 3000
    # 2 workers: 4 chunks in flight or waiting, the one being filled, and what the workers hold
    assert max(ahead) <= 6 * 100
