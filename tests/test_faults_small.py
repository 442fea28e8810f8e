"""The fault harness (bench/faults.py), small: one seeded kill per signal while tasks run and while
merging, then `shardrun run` again; nothing lost, nothing doubled, no finished task run again, every
run in the state it should end in, nothing left behind."""

from __future__ import annotations

import importlib.util
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest


def _load_harness() -> ModuleType:
    path = Path(__file__).parents[1] / "bench" / "faults.py"
    spec = importlib.util.spec_from_file_location("shardrun_bench_faults", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


faults = _load_harness()
# Small and quick; each phase's work still outlasts the latest kill (0.8 of it, below).
SHAPE = faults.Shape(tasks=6, rows_per_task=5, concurrency=3, split_s=0.2, app_s=0.3, merge_s=0.5)
KILL_9_MERGE_TEMP = ".result.txt."  # the known leftover: test_kill_9_while_merging_... below


# Each signal and both phases, in four trials (SIGTERM and SIGINT share one handler; the full
# harness runs every pair 20 times): the suite stays quick.
@pytest.mark.parametrize(("sig", "phase"), [("KILL", "running"), ("TERM", "running"),
                                            ("INT", "merging"), ("KILL", "merging")])
def test_a_client_stopped_at_a_random_moment_resumes_to_the_right_result(
        tmp_path: Path, sig: str, phase: str) -> None:
    delay = random.Random(f"{sig}/{phase}").uniform(0, 0.8 * faults.nominal_lengths(SHAPE)[phase])
    trial = faults.kill_trial(tmp_path / "trial", SHAPE, sig, phase, delay)
    assert trial.hit, f"the signal missed the {phase} phase"
    assert trial.killed_code == (-signal.SIGKILL if sig == "KILL" else 130), trial.codes
    assert trial.rerun_codes == [0]
    findings = trial.findings()
    if sig == "KILL" and phase == "merging":  # reproduced on its own (xfail) below
        temp = [f for f in findings.pop("temp files", []) if not f.startswith(KILL_9_MERGE_TEMP)]
        if temp:
            findings["temp files"] = temp
    assert findings == {}


@pytest.mark.xfail(strict=True, reason="kill -9 while merging leaves the merge's temp file "
                   "(.result.txt.XXXX from merge._atomic_path) beside the result; no later run "
                   "removes it, and the orphaned merger command keeps writing into it")
def test_kill_9_while_merging_leaves_no_temp_file_beside_the_result(tmp_path: Path) -> None:
    folder = tmp_path / "trial"
    job = faults.make_job(folder, SHAPE)
    home = folder / "home"
    client = faults.start_client(job, home)
    deadline = time.monotonic() + 60
    while not list(folder.glob(".result.txt.*")) and time.monotonic() < deadline:
        assert client.poll() is None, client.communicate()
        time.sleep(0.01)
    assert faults.latest_status(home) == "merging"
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    again = subprocess.run([sys.executable, "-m", "shardrun", "run", str(job)], capture_output=True,
                           text=True, env=faults.client_env(home), timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert faults.result_diff(folder, SHAPE)[2]  # the result itself is right
    faults.strays(folder)  # the orphaned merger, if it still runs
    assert list(folder.glob(".result*")) == []
