"""The acceptance script (azure-batch + azure-storage-blob only) against the emulator, started as
`python -m shardrun.emulator`, and Azurite: a container pool, a job, 500 tasks with output files,
all 500 outputs found. Once plainly, once with every kind of fault injection switched on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shardrun.emulator import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME

from ..fixtures.azurite import Azurite

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "batch_emulator_acceptance.py"
FAULTS = [
    "--fault-seed",
    "11",
    "--throttle-rate",
    "0.05",
    "--busy-rate",
    "0.05",
    "--retry-after-share",
    "0.5",
    "--preempt-rate",
    "0.5",
    "--node-start-failure-rate",
    "0.2",
]


@contextmanager
def emulator_process(*extra: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shardrun.emulator",
            "--port",
            "0",
            "--node-start-seconds",
            "0.5",
            "--check-responses",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert " at http://127.0.0.1:" in line, line
        yield line.split(" at ")[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("faults", [[], FAULTS], ids=["plain", "with-faults"])
def test_500_tasks_with_output_files(azurite: Azurite, faults: list[str]) -> None:
    with emulator_process(*faults) as url:
        env = {
            **os.environ,
            "SHARDRUN_ACCEPT_BATCH_KEY": DEV_ACCOUNT_KEY,
            "SHARDRUN_ACCEPT_STORAGE": azurite.connection_string,
        }
        spot = ["--nodes", "2", "--spot", "3"] if faults else []
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--batch-url",
                url,
                "--account",
                DEV_ACCOUNT_NAME,
                "--tasks",
                "500",
                "--timeout",
                "600",
                *spot,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=ROOT,
        )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "found 500/500 outputs" in result.stdout


@pytest.mark.slow
def test_acceptance_script_with_podman_containers(azurite: Azurite, podman: object, test_image: str) -> None:
    """The same script with the tasks in real containers (fewer tasks: each is a podman run)."""
    with emulator_process("--container-runtime", "podman") as url:
        env = {
            **os.environ,
            "SHARDRUN_ACCEPT_BATCH_KEY": DEV_ACCOUNT_KEY,
            "SHARDRUN_ACCEPT_STORAGE": azurite.connection_string,
        }
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--batch-url",
                url,
                "--account",
                DEV_ACCOUNT_NAME,
                "--tasks",
                "30",
                "--nodes",
                "2",
                "--slots",
                "2",
                "--image",
                test_image,
                "--clear-entrypoint",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=ROOT,
        )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "found 30/30 outputs" in result.stdout
