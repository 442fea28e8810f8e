"""A run's pool still being deleted when the run goes on (a `shardrun retry` right after a failed
run released it; deleting a pool takes minutes on the service): the run makes a pool with a new id,
instead of submitting a job to a pool about to vanish (it failed with PoolNotFound)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.cli import main

from .fixtures.azurite import DEV_KEY, Azurite
from .fixtures.emulator import start_emulator
from .test_batch_backend import batch_client, batch_job, ledger, left_in


def test_retry_makes_a_new_pool_while_the_old_one_is_being_deleted(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = start_emulator(pool_delete_seconds=4.0)
    try:
        monkeypatch.setenv("AZURE_BATCH_KEY", emu.config.account_key)
        monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
        ready = tmp_path / "ready"
        app = ["/bin/sh", "-c", f'test -f {ready} && tr a-z A-Z < "$0" > "$1"', "{input}", "{output}"]
        job = batch_job(tmp_path, emu, azurite, lines=8, per_task=4, app=app, run={"retries": 0})
        assert main(["run", str(job)]) != 0
        run_id = ledger(shardrun_home).runs()[0].run_id
        pools = {p.id: str(p.state).lower().rsplit(".", 1)[-1] for p in batch_client(emu).list_pools()}
        assert pools == {f"{run_id}-pool": "deleting"}  # released, not yet gone
        ready.write_text("")
        capsys.readouterr()
        code = main(["retry", run_id, "--failed"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert f"on pool {run_id}-pool2 " in err
        resources = ledger(shardrun_home).resources(run_id, live_only=False)
        assert [r for k, r in resources if k.endswith("pool")] == [f"{run_id}-pool", f"{run_id}-pool2"]
        assert [k for k, _ in ledger(shardrun_home).resources(run_id)] == ["namespace"]  # pools and jobs deleted
        assert (tmp_path / "result.txt").read_text() == "".join(f"LINE {i}\n" for i in range(8))
        assert left_in(batch_client(emu)) == ([], [])
    finally:
        emu.stop()
