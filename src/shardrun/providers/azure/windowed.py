"""A thread pool's map in order, over a window: what Blob Storage transfers and Batch task
submission both use to keep a few requests per thread in flight, never the whole list."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_order(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T],
             window: int) -> Iterator[R]:
    """pool.map(fn, items), in order, with at most `window` items submitted and not yet given back
    (pool.map submits every item first: a Future each). On an error, or when the caller stops
    early, the items not yet started are cancelled."""
    queue: deque[Future[R]] = deque()
    try:
        for item in items:
            queue.append(pool.submit(fn, item))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()
