"""Pieces by reference when the storage account lost the run's stored inputs (Azurite killed -9
before it saved them; an account restored from a backup): the next command stores them again from
the user's files if they are as the run split them, or stops with one line saying how to start
afresh, before any pool is made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from shardrun.cli import main
from shardrun.core.ledger import Ledger
from shardrun.emulator import Emulator

from .fixtures.azurite import Azurite
from .helpers import write_job
from .test_batch_backend import batch_client, emulator, left_in, secrets_env  # noqa: F401 (fixtures)

LINES = "".join(f"line {i}\n" for i in range(12))


def failing_job(folder: Path, azurite: Azurite, emu: Emulator) -> Path:
    """Its tasks fail until `ready` exists, so the run ends failed with its sources stored."""
    (folder / "in.txt").write_text(LINES)
    app = ["/bin/sh", "-c", f'test -f {folder / "ready"} && tr a-z A-Z < "$0" > "$1"', "{input}",
           "{output}"]
    return write_job(folder, {
        "app": {"command": app},
        "split": {"input": "in.txt", "method": "lines", "per_task": 4},
        "merge": {"method": "concat", "output": "result.txt"},
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 0, "timeout": "2m"},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emu.url, "account_name": emu.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 1, "task_slots_per_node": 2,
                  "poll_interval": 0.3, "pieces": "by-reference"},
    })


def lose_sources(azurite: Azurite, run_id: str) -> None:
    container = BlobServiceClient.from_connection_string(azurite.connection_string) \
        .get_container_client(run_id)
    names = [b.name for b in container.list_blobs(name_starts_with="sources/")]
    assert names == ["sources/0/in.txt"]
    container.delete_blob(names[0])


def failed_run(folder: Path, azurite: Azurite, emu: Emulator, home: Path,
               capsys: pytest.CaptureFixture[str]) -> str:
    job = failing_job(folder, azurite, emu)
    assert main(["run", str(job)]) == 1, capsys.readouterr().err
    run_id = Ledger(home / "ledger.sqlite").runs()[0].run_id
    lose_sources(azurite, run_id)
    (folder / "ready").write_text("")
    capsys.readouterr()
    return run_id


def test_lost_sources_are_stored_again_from_unchanged_files(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = failed_run(tmp_path, azurite, emulator, shardrun_home, capsys)
    code = main(["retry", run_id, "--failed"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "1 stored input(s) gone from storage; storing them again" in err
    assert (tmp_path / "result.txt").read_text() == LINES.upper()
    assert left_in(batch_client(emulator)) == ([], [])


def test_lost_sources_of_a_changed_file_stop_the_run_before_a_pool(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = failed_run(tmp_path, azurite, emulator, shardrun_home, capsys)
    st = (tmp_path / "in.txt").stat()
    os.utime(tmp_path / "in.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    code = main(["retry", run_id, "--failed"])
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "in.txt" in lines[0] and "shardrun run --new" in lines[0], err
    assert "Traceback" not in err
    assert left_in(batch_client(emulator)) == ([], [])
    assert (tmp_path / "in.txt").read_text() == LINES  # read only
