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

from shardrun.cli import main
from shardrun.core.run import Run
from shardrun.core.states import RunState


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
    assert findings == {}


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


def test_a_ctrl_c_just_after_the_run_succeeded_still_says_it_succeeded(
        tmp_path: Path, shardrun_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    shape = faults.Shape(tasks=2, rows_per_task=2, concurrency=2, split_s=0, app_s=0, merge_s=0)
    job = faults.make_job(tmp_path / "trial", shape)
    recorded = Run.set_state

    def then_ctrl_c(self: Run, state: RunState, message: str | None = None) -> None:
        recorded(self, state, message)
        if state == RunState.SUCCEEDED:
            raise KeyboardInterrupt  # the user's Ctrl-C, at this moment (bench/faults.py hits it)

    monkeypatch.setattr(Run, "set_state", then_ctrl_c)
    main(["run", str(job)])
    latest = faults.latest_run(shardrun_home)
    assert latest is not None and latest[1] == "succeeded"
    assert f"{latest[0]}: succeeded" in capsys.readouterr().out
