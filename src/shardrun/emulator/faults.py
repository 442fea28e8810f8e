"""Opt-in, seeded fault injection: throttled or busy responses, Spot preemption, nodes that fail to start.

Each kind of fault draws from its own seeded stream, so the number of requests a client happens to
send does not change which nodes get preempted.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

from .errors import BatchApiError


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

    @property
    def enabled(self) -> bool:
        return any((self.throttle_rate, self.busy_rate, self.preempt_rate, self.node_start_failure_rate))


class Faults:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._requests = random.Random(f"{config.seed}:requests")
        self._preempt = random.Random(f"{config.seed}:preempt")
        self._start = random.Random(f"{config.seed}:start")
        self.preemptions = 0
        self.request_faults = 0

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
