"""How shardrun retries Azure requests: one rule, applied by one pipeline policy to every request of
the Batch client and of the Blob clients (and Key Vault's).

The rule (`AZURE_RETRY`, the one place it is configured):
- transient: HTTP 408, 429, 500, 502, 503 and 504, with or without Retry-After; connection errors
  (refused, reset) and timeouts, before or after the request was sent;
- the wait: Retry-After when the service sends it (capped), else bounded exponential backoff with
  jitter, so clients throttled together do not come back together;
- the bound: at most `tries` tries and `budget` seconds per request; then the last error goes up, and
  `last_tries()` says how many tries and how long it took, for the message.

Any method is retried, POST and PATCH included. azure-core's own RetryPolicy retries those only on
500/503/504 or with Retry-After, so a 429 without it on create pool reached the caller. Retrying a
POST whose answer was lost can send it twice; that is safe because shardrun's creates are
idempotent: a task collection answers TaskExists for a task already added, and a pool or job that
already exists counts as created when its metadata names the run (batch_account.create_owned).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_jitter = random.Random()


@dataclass(frozen=True)
class RetryRule:
    """When an Azure request is tried again, how long shardrun waits, and when it gives up."""

    tries: int = 8  # in all, the first one included
    first_wait: float = 0.25  # seconds; doubles per try, then jittered to between half and all of it
    max_wait: float = 20.0
    max_retry_after: float = 60.0  # a longer Retry-After is waited this long
    budget: float = 120.0  # seconds for one request, its tries and waits together
    connect_timeout: float = 10.0  # a dead endpoint fails fast; the retries take over
    read_timeout: float = 120.0
    statuses: frozenset[int] = TRANSIENT_STATUS

    def with_tries(self, tries: int) -> RetryRule:
        return replace(self, tries=max(1, tries))

    def backoff(self, tries: int) -> float:
        """The wait after the `tries`-th failed try, without Retry-After."""
        ceiling = min(self.max_wait, self.first_wait * 2.0 ** (tries - 1))
        return ceiling / 2 + _jitter.uniform(0, ceiling / 2)

    def wait(self, tries: int, elapsed: float, retry_after: float | None) -> float | None:
        """Seconds to wait before the next try, or None to give up."""
        if tries >= self.tries:
            return None
        wait = min(retry_after, self.max_retry_after) if retry_after is not None else self.backoff(tries)
        return None if elapsed + wait > self.budget else wait

    @staticmethod
    def transient(err: AzureError) -> bool:
        """A connection error or timeout (the request may or may not have been applied); never a
        refused credential."""
        if isinstance(err, ClientAuthenticationError):
            return False
        return isinstance(err, ServiceRequestError | ServiceResponseError)

    def policy(self, *, storage: bool = False) -> AzureRetryPolicy:
        return AzureRetryPolicy(self, storage=storage)

    def client_options(self, *, storage: bool = False) -> dict[str, Any]:
        """Keyword arguments that make an Azure SDK client follow this rule."""
        return {"retry_policy": self.policy(storage=storage),
                "connection_timeout": self.connect_timeout, "read_timeout": self.read_timeout}


AZURE_RETRY = RetryRule()


@dataclass(frozen=True)
class Tries:
    """How the last request of this thread went: tries made, seconds spent."""

    count: int
    seconds: float

    def __str__(self) -> str:
        return f"after {self.count} tries over {self.seconds:.0f} s"


class _LastTries(threading.local):
    tries: Tries | None = None


_last = _LastTries()


def reset_tries() -> None:
    _last.tries = None


def last_tries() -> Tries | None:
    """The tries of this thread's last Azure request (pipelines run in the caller's thread)."""
    return _last.tries


def _retry_after(response: PipelineResponse[Any, Any]) -> float | None:
    value = response.http_response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class AzureRetryPolicy(HTTPPolicy[Any, Any]):
    """`RetryRule` as an azure-core pipeline policy. `storage`: in a Blob client's pipeline, which
    reads the location each response came from (always the primary here) off the response."""

    def __init__(self, rule: RetryRule, *, storage: bool = False,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.rule = rule
        self.storage = storage
        self.sleep = sleep

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        rule = self._per_request(request.context.options)
        started = time.monotonic()
        body = request.http_request.body
        position = _tell(body)
        tries = 0
        while True:
            tries += 1
            try:
                response = self.next.send(request)
            except AzureError as err:
                wait = rule.wait(tries, time.monotonic() - started, None) if rule.transient(err) else None
                if wait is None or not _rewind(body, position):
                    _last.tries = Tries(tries, time.monotonic() - started)
                    raise
                self.sleep(wait)
                continue
            if response.http_response.status_code in rule.statuses:
                wait = rule.wait(tries, time.monotonic() - started, _retry_after(response))
                if wait is not None and _rewind(body, position):
                    self.sleep(wait)
                    continue
            _last.tries = Tries(tries, time.monotonic() - started)
            if self.storage:
                from azure.storage.blob import LocationMode

                response.http_response.location_mode = LocationMode.PRIMARY
            return response

    def _per_request(self, options: dict[str, Any]) -> RetryRule:
        """Take the retry options a call may pass (azure-core's, and the storage SDK's own) off
        the request, so they never reach the transport; a call's retry_total/timeout apply."""
        rule = self.rule
        if "retry_total" in options:
            rule = rule.with_tries(int(options.pop("retry_total")) + 1)
        if options.get("timeout") is not None:
            rule = replace(rule, budget=float(options.pop("timeout")))
        for key in _CALL_RETRY_OPTIONS:
            options.pop(key, None)
        return rule


# Per-call options other retry policies read; this one takes them off and does without them.
_CALL_RETRY_OPTIONS = ("retry_connect", "retry_read", "retry_status", "retry_backoff_factor",
                       "retry_backoff_max", "retry_mode", "retry_on_methods", "timeout",
                       "retry_to_secondary", "location_mode", "hosts", "retry_hook")


def _tell(body: Any) -> int | None:
    """Where a streamed body starts, so a retry can send it again; None for bytes or no body."""
    if body is None or isinstance(body, bytes | bytearray | str | dict | list):
        return None
    try:
        return int(body.tell())
    except (AttributeError, OSError, ValueError):
        return -1  # a stream that cannot rewind: it is sent once


def _rewind(body: Any, position: int | None) -> bool:
    if position is None:
        return True
    if position < 0:
        return False
    try:
        body.seek(position)
    except (AttributeError, OSError, ValueError):
        return False
    return True
