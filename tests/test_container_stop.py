"""Stopping a run whose container is still being created: `podman kill` refuses a container that
is not running yet, so one SIGKILL could be lost and the app run to its end. stop() sends it again
until the attempt has ended. A `podman` first on PATH refuses the first kills, as podman does for a
container in the created state."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shardrun.core import layout
from shardrun.core.compute import RunContext, TaskSpec
from shardrun.core.states import AttemptResult
from shardrun.images.engine import Engine
from shardrun.providers.local.memory import MemoryStore
from shardrun.providers.local.processes import LocalBackend
from shardrun.providers.local.runtime import ContainerSettings

REFUSING_PODMAN = """#!/bin/sh
if [ "$1" = kill ]; then
  n=$(cat "{count}" 2>/dev/null || echo 0)
  if [ "$n" -lt 3 ]; then
    echo $((n + 1)) > "{count}"
    echo "Error: can only kill running containers: container state improper" >&2
    exit 125
  fi
fi
exec "{real}" "$@"
"""


def test_a_kill_refused_while_the_container_starts_is_sent_again(
        tmp_path: Path, podman: Engine, test_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, count = tmp_path / "bin", tmp_path / "refused"
    bin_dir.mkdir()
    shim = bin_dir / "podman"
    shim.write_text(REFUSING_PODMAN.format(count=count, real=podman.path))
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    store = MemoryStore()
    run_id, task = layout.new_run_id("stop"), layout.task_id(1, 1)
    store.put_bytes(layout.input_key(run_id, task, "in.txt"), b"x\n")
    backend = LocalBackend("podman", kill_grace=0.05,
                           containers=ContainerSettings(test_image, ("--network", "none")))
    backend.start(RunContext(run_id=run_id, command=["/bin/sh", "-c", "sleep 120", "sh"],
                             store=store, scratch=tmp_path / "scratch", retries=0, timeout=None,
                             concurrency=1))
    try:
        backend.submit([TaskSpec(task, layout.input_key(run_id, task, "in.txt"),
                                 layout.output_key(run_id, task, "out.txt"), 1)])
        while not any(e.kind == "started" for e in backend.events(0.05)):
            pass
        backend.stop()
        ends = []
        while not ends:
            ends = [e for e in backend.events(0.1) if e.kind == "finished"]
        assert ends[0].result == AttemptResult.INTERRUPTED, ends[0]
        assert int(count.read_text()) == 3  # the refused kills happened, and one came after
    finally:
        backend.close()
    left = subprocess.run([podman.path, "ps", "-a", "--filter", f"label=shardrun.run={run_id}",
                           "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    assert left.stdout.strip() == ""
