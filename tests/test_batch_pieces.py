"""Pieces by reference end to end: the real SDKs against the Batch emulator and Azurite. The inputs
are stored once, a job preparation task brings them to each node, each task cuts its piece; the
merged result is byte-identical to the local backend's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from shardrun.cli import main
from shardrun.core.layout import sources_prefix
from shardrun.core.ledger import Ledger
from shardrun.emulator import Emulator
from shardrun.providers.azure.batch_files import RunFiles

from .fixtures.azurite import Azurite
from .helpers import PY, write_job
from .test_batch_backend import batch_client, emulator, left_in, secrets_env  # noqa: F401 (fixtures)

COPY = [PY, "-c", "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])", "{input}",
        "{output}"]
INPUTS = {
    "lines": {"a.txt": b"one\r\ntwo\nthree", "b.txt": b"", "c.txt": b"x" * 3000 + b"\nlast\n"},
    "json": {"a.json": b' [ {"a": "x]\\"[,"},\n  [1, [2]] , "s" ,null]\n', "b.json": b"[7 ,8, {}]"},
}


def job_file(folder: Path, kind: str, sections: dict[str, dict[str, object]]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, data in INPUTS[kind].items():
        (folder / name).write_bytes(data)
    return write_job(folder, {
        "app": {"command": COPY},
        "split": {"input": f"*.{'txt' if kind == 'lines' else 'json'}", "method": kind, "per_task": 2},
        "merge": {"method": "concat", "output": "result.out"},
        **sections,
    })


@pytest.mark.parametrize("kind", ["lines", "json"])
def test_pieces_by_reference_give_the_local_backends_result(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str], kind: str,
) -> None:
    local = job_file(tmp_path / "local", kind, {"run": {"concurrency": 2}})
    assert main(["run", str(local)]) == 0, capsys.readouterr().err
    batch = job_file(tmp_path / "batch", kind, {
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 1, "timeout": "2m"},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emulator.url, "account_name": emulator.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 2, "task_slots_per_node": 2,
                  "poll_interval": 0.3, "pieces": "by-reference"},
    })
    assert main(["run", str(batch)]) == 0, capsys.readouterr().err
    expected = (tmp_path / "local" / "result.out").read_bytes()
    assert (tmp_path / "batch" / "result.out").read_bytes() == expected and expected

    ledger = Ledger(shardrun_home / "ledger.sqlite")
    run = next(r for r in ledger.runs() if r.backend == "azure-batch")
    tasks = ledger.tasks(run.run_id)
    assert len(tasks) >= 3 and all(t.segments for t in tasks)
    suffix = ".txt" if kind == "lines" else ".json"  # the names local pieces have (status shows them)
    assert [t.input_key.rsplit("/", 1)[-1] for t in tasks] == [
        f"piece-{i:06d}{suffix}" for i in range(1, len(tasks) + 1)]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    names = [b.name for b in service.get_container_client(run.run_id).list_blobs()]
    stored = sorted(n for n in names if n.startswith("sources/"))
    assert stored == sorted(f"sources/{i}/{name}" for i, name in enumerate(sorted(INPUTS[kind])))
    assert not [n for n in names if n.startswith("inputs/")]  # no piece was uploaded on its own
    assert len([n for n in names if n.startswith("outputs/")]) == len(tasks)


def test_a_preparation_that_fails_on_every_node_stops_the_run(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sources vanish before the job starts (say, deleted by hand): no node can prepare, so no
    task can start. The run stops with the reason instead of waiting for the kill switch."""
    original = RunFiles.preparation

    def without_sources(files: RunFiles, tasks: Any) -> Any:
        prep = original(files, tasks)
        container = BlobServiceClient.from_connection_string(azurite.connection_string) \
            .get_container_client(files.ctx.run_id)
        for key in [o.key for o in files.store.list(sources_prefix(files.ctx.run_id))]:
            container.delete_blob(key.split("/", 1)[1])
        return prep

    monkeypatch.setattr(RunFiles, "preparation", without_sources)
    batch = job_file(tmp_path / "batch", "lines", {
        "run": {"backend": "azure-batch", "storage": "blob", "retries": 0, "timeout": "2m"},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emulator.url, "account_name": emulator.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 1, "poll_interval": 0.3,
                  "pieces": "by-reference"},
    })
    assert main(["run", str(batch)]) != 0
    err = capsys.readouterr().err
    assert "job preparation task that downloads the run's inputs" in err and "failed on every node" in err
    assert left_in(batch_client(emulator)) == ([], [])  # the pool and job were released
