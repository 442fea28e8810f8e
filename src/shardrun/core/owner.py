"""One owner per run: an OS lock on a file in the home, held while a client works on the run.

The kernel releases the lock when the client dies, however it dies, so a kill -9 needs no manual
unlock. A second client either waits (`--wait`) or stops at once and says who owns the run. The lock
file also records who holds it (pid, host, since), for that message.

A job has a lock too, held from the moment a client looks for the job's unfinished run until it is
done with it: two first starts of a new job at the same moment make one run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shardrun.core.errors import ShardrunError


class RunBusy(ShardrunError):
    """Another client works on this run. Exit code 3."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: float
    run_id: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"PID {self.pid} on {self.host} since {when}"


class Lock:
    """An exclusive flock on `path`. `what` names it in messages ("run X", "job Y")."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None
        self.waited_for: Holder | None = None  # who held it when we had to wait

    def acquire(self, *, wait: bool = False, run_id: str = "",
                on_wait: Callable[[str], None] | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder_once_recorded()
                if not wait:
                    raise RunBusy(self._busy(holder)) from None
                if on_wait is not None:
                    on_wait(f"waiting: {self._busy(holder)}")
                self.waited_for = holder
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.record(run_id)

    def record(self, run_id: str) -> None:
        """Write who holds the lock (and, for a job, which run it works on)."""
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "since": time.time(),
                           "run_id": run_id}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def _holder_once_recorded(self) -> Holder | None:
        """The holder, waiting a moment for one that has the lock but has not yet written its name
        (the two happen one after the other)."""
        for _ in range(40):
            holder = self.holder()
            if holder is not None:
                return holder
            time.sleep(0.025)
        return None

    def holder(self) -> Holder | None:
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
            return Holder(int(data["pid"]), str(data["host"]), float(data["since"]),
                          str(data.get("run_id") or ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _busy(self, holder: Holder | None) -> str:
        what = f"run {holder.run_id}" if holder and holder.run_id else self.what
        who = holder.describe() if holder else "another client"
        return f"{what} is being worked on by {who}"

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _locks(home: Path) -> Path:
    return home / "locks"


def run_lock(home: Path, run_id: str) -> Lock:
    return Lock(_locks(home) / f"run-{run_id}.lock", f"run {run_id}")


def job_lock(home: Path, job_key: str) -> Lock:
    digest = hashlib.sha256(job_key.encode()).hexdigest()[:16]
    return Lock(_locks(home) / f"job-{digest}.lock", f"job {job_key}")


@contextlib.contextmanager
def holding(lock: Lock, *, wait: bool = False, run_id: str = "",
            on_wait: Callable[[str], None] | None = None) -> Iterator[Lock]:
    lock.acquire(wait=wait, run_id=run_id, on_wait=on_wait)
    try:
        yield lock
    finally:
        lock.release()
