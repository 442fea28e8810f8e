"""The project's Batch emulator for the benches: started in its own process (so its CPU is not the
client's), and clients of it with the development account. Not a benchmark: the benches import it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from shardrun.emulator import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME

ROOT = Path(__file__).resolve().parents[1]


class EmulatorDidNotStart(RuntimeError):
    """The emulator's process did not print its address; the message has the end of its log."""


class EmulatorProcess(NamedTuple):
    url: str
    port: int
    pid: int


@contextlib.contextmanager
def emulator_process(*options: str) -> Iterator[EmulatorProcess]:
    """`python -m shardrun.emulator --port 0 OPTIONS` in a process of its own, stopped on the way out
    (terminated, killed if it has not exited 30 s later)."""
    argv = [sys.executable, "-m", "shardrun.emulator", "--port", "0", *options]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if " at http://" not in line:
                log.seek(0)
                raise EmulatorDidNotStart(f"the emulator did not start: {line!r} {log.read()[-2000:]}")
            url = line.split(" at ")[-1].strip()
            yield EmulatorProcess(url, int(url.rsplit(":", 1)[1].split("/")[0]), proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RequestCounter(SansIOHTTPPolicy[Any, Any]):
    """Counts the HTTP requests a client sends (per retry: a retried request counts again)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self.count += 1


def batch_client(url: str, counter: RequestCounter | None = None) -> BatchClient:
    """A client of the emulator at `url` with the development account's shared key."""
    key = AzureNamedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY)
    return BatchClient(url, key, per_retry_policies=[counter] if counter else [])


def ubuntu_vm() -> bm.VirtualMachineConfiguration:
    """The VM configuration of the benches' pools (the emulator accepts any image)."""
    return bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts",
                                                 sku="server", version="latest"),
        node_agent_sku_id="batch.node.ubuntu 24.04")
