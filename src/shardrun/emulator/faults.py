"""Opt-in, seeded fault injection, each kind the service really shows:

- throttled or busy answers (429 TooManyRequests / 503 ServerBusy, with or without Retry-After);
- connection resets before a request is handled (no side effect);
- lost answers: the request takes effect, then the connection closes without a response;
- slow answers: the request takes effect, the answer comes `slow_seconds` late;
- Spot preemption, and nodes that fail to start;
- pool resize errors (quota reached, allocation failed or timed out).

Each kind of fault draws from its own seeded stream, so the number of requests a client happens to
send does not change which nodes get preempted.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

from .errors import BatchApiError

# Pool resize errors (PoolResizeErrorCodes), with the documented descriptions, and which nodes
# each one stops: the dedicated core quota, the Spot/low-priority core quota, or any allocation.
RESIZE_ERRORS: dict[str, tuple[str, tuple[bool, ...]]] = {
    "AccountCoreQuotaReached": ("The specified account has reached core quota.", (True,)),
    "AccountLowPriorityCoreQuotaReached": (
        "The specified account has reached low priority core quota.",
        (False,),
    ),
    "AllocationFailed": ("Desired number of nodes could not be allocated.", (True, False)),
    "AllocationTimedOut": (
        "Desired number of nodes could not be allocated as the resize timeout was reached.",
        (True, False),
    ),
}


def resize_error_stops(code: str, dedicated: bool) -> bool:
    """Whether this resize error keeps nodes of this kind (dedicated or Spot) from being allocated."""
    return dedicated in RESIZE_ERRORS[code][1]


@dataclass(frozen=True)
class FaultConfig:
    seed: int = 0
    throttle_rate: float = 0.0  # share of requests answered 429 TooManyRequests
    busy_rate: float = 0.0  # share of requests answered 503 ServerBusy
    retry_after_share: float = 1.0  # share of those fault responses that carry Retry-After
    retry_after_seconds: int = 1
    preempt_rate: float = 0.0  # per Spot node running a task, expected preemptions per second
    max_preemptions: int | None = None  # stop preempting after this many (None: no limit)
    preempt_recover_seconds: float = 2.0  # a preempted node comes back after this long
    node_start_failure_rate: float = 0.0  # share of new nodes that end up unusable
    reset_rate: float = 0.0  # share of connections reset before the request is handled
    drop_response_rate: float = 0.0  # share of requests applied whose answer is then lost
    slow_rate: float = 0.0  # share of requests applied whose answer comes slow_seconds late
    slow_seconds: float = 10.0
    resize_error: str | None = None  # one of RESIZE_ERRORS: growing a pool fails with it
    resize_error_rate: float | None = None  # None: the first growth of each pool fails; else this share

    def __post_init__(self) -> None:
        if self.resize_error is not None and self.resize_error not in RESIZE_ERRORS:
            raise ValueError(f"resize_error must be one of {', '.join(RESIZE_ERRORS)}")

    @property
    def enabled(self) -> bool:
        return any(
            (
                self.throttle_rate,
                self.busy_rate,
                self.preempt_rate,
                self.node_start_failure_rate,
                self.reset_rate,
                self.drop_response_rate,
                self.slow_rate,
                self.resize_error,
            )
        )


class Faults:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._requests = random.Random(f"{config.seed}:requests")
        self._preempt = random.Random(f"{config.seed}:preempt")
        self._start = random.Random(f"{config.seed}:start")
        self._reset = random.Random(f"{config.seed}:reset")
        self._drop = random.Random(f"{config.seed}:drop")
        self._slow = random.Random(f"{config.seed}:slow")
        self._resize = random.Random(f"{config.seed}:resize")
        self.preemptions = 0
        self.request_faults = 0
        self.resets = 0
        self.drops = 0
        self.slowed = 0
        self.resize_errors = 0

    def request_fault(self) -> BatchApiError | None:
        """A 429 or 503 to send instead of handling this request, or None."""
        cfg = self.config
        if not (cfg.throttle_rate or cfg.busy_rate):
            return None
        with self._lock:
            draw = self._requests.random()
            with_header = self._requests.random() < cfg.retry_after_share
            if draw < cfg.throttle_rate:
                status, code = 429, "TooManyRequests"
            elif draw < cfg.throttle_rate + cfg.busy_rate:
                status, code = 503, "ServerBusy"
            else:
                return None
            self.request_faults += 1
        headers = {"Retry-After": str(cfg.retry_after_seconds)} if with_header else {}
        return BatchApiError(status, code, headers=headers)

    def should_preempt(self, seconds: float) -> bool:
        """Whether a Spot node running tasks is preempted during the last `seconds`."""
        cfg = self.config
        if cfg.preempt_rate <= 0:
            return False
        with self._lock:
            if cfg.max_preemptions is not None and self.preemptions >= cfg.max_preemptions:
                return False
            chance = 1.0 - math.exp(-cfg.preempt_rate * seconds)
            if self._preempt.random() < chance:
                self.preemptions += 1
                return True
        return False

    def node_fails_to_start(self) -> bool:
        if self.config.node_start_failure_rate <= 0:
            return False
        with self._lock:
            return self._start.random() < self.config.node_start_failure_rate

    def _draw(self, stream: random.Random, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return stream.random() < rate

    def reset_connection(self) -> bool:
        """Whether to reset this connection before the request is read or handled."""
        hit = self._draw(self._reset, self.config.reset_rate)
        if hit:
            with self._lock:
                self.resets += 1
        return hit

    def drop_response(self) -> bool:
        """Whether to close the connection without sending the answer of a handled request."""
        hit = self._draw(self._drop, self.config.drop_response_rate)
        if hit:
            with self._lock:
                self.drops += 1
        return hit

    def response_delay(self) -> float:
        """Seconds to hold the answer of a handled request back (0: none)."""
        if not self._draw(self._slow, self.config.slow_rate):
            return 0.0
        with self._lock:
            self.slowed += 1
        return self.config.slow_seconds

    def resize_error(self, first: bool) -> str | None:
        """The error for a pool resize that needs nodes the configured code stops, or None.

        Without a rate, only the first such resize of each pool fails; with one, that share."""
        code = self.config.resize_error
        if code is None:
            return None
        rate = self.config.resize_error_rate
        hit = first if rate is None else self._draw(self._resize, rate)
        if not hit:
            return None
        with self._lock:
            self.resize_errors += 1
        return code
