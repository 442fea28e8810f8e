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
from shardrun.core.spec import load_spec
from shardrun.core.split import resolve_inputs
from shardrun.emulator import Emulator
from shardrun.providers.azure.batch_files import RunFiles

from .fixtures.azurite import Azurite
from .helpers import PY, write_job
from .test_batch_backend import batch_client, emulator, left_in, secrets_env  # noqa: F401 (fixtures)

COPY = [PY, "-c", "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])", "{input}",
        "{output}"]
INPUTS = {
    "lines": {"a.txt": b"one\r\ntwo\nthree", "b.txt": b"", "c.txt": b"x" * 3000 + b"\nlast\n"},
    # two inputs of one name in two folders, and names with spaces, quotes and non-ASCII letters
    "names": {"a.txt": b"1\n2\n3", "sub/a.txt": b"4\n5\n", "sub/\u00fc \"q\" it's.txt": b"6\r\n7\n8"},
    "json": {"a.json": b' [ {"a": "x]\\"[,"},\n  [1, [2]] , "s" ,null]\n', "b.json": b"[7 ,8, {}]"},
}


def job_file(folder: Path, kind: str, sections: dict[str, dict[str, object]]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, data in INPUTS[kind].items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    return write_job(folder, {
        "app": {"command": COPY},
        "split": {"input": {"lines": "*.txt", "names": "**/*.txt", "json": "*.json"}[kind],
                  "method": "json" if kind == "json" else "lines", "per_task": 2},
        "merge": {"method": "concat", "output": "result.out"},
        **sections,
    })


@pytest.mark.parametrize("kind", ["lines", "json", "names"])
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
    suffix = ".json" if kind == "json" else ".txt"  # the names local pieces have (status shows them)
    assert [t.input_key.rsplit("/", 1)[-1] for t in tasks] == [
        f"piece-{i:06d}{suffix}" for i in range(1, len(tasks) + 1)]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    names = [b.name for b in service.get_container_client(run.run_id).list_blobs()]
    stored = sorted(n for n in names if n.startswith("sources/"))
    inputs = resolve_inputs(load_spec(batch))
    assert stored == sorted(f"sources/{i}/{p.name}" for i, p in enumerate(inputs))
    assert len(inputs) == len(INPUTS[kind])
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


def test_an_input_changed_after_its_plan_stops_the_run_in_one_line(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plan's offsets are of the bytes read while planning: an input that grows before its
    upload would give tasks wrong pieces. The run stops (exit 2, one line) and is abandoned."""
    from shardrun.core import prepare

    def plan_then_change(spec: Any, inputs: list[Path]) -> Any:
        plans = original(spec, inputs)
        with inputs[0].open("ab") as f:
            f.write(b"appended after the plan\n")
        return plans

    original = prepare.plan_job
    monkeypatch.setattr(prepare, "plan_job", plan_then_change)
    batch = job_file(tmp_path / "batch", "lines", {
        "run": {"backend": "azure-batch", "storage": "blob"},
        "storage": {"account_url": azurite.account_url, "auth": "key"},
        "batch": {"account_url": emulator.url, "account_name": emulator.config.account_name,
                  "auth": "shared_key", "dedicated_nodes": 1, "pieces": "by-reference"},
    })
    assert main(["run", str(batch)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].endswith("a.txt: changed while it was split and stored; "
                                                   "run again"), errors
    run = Ledger(shardrun_home / "ledger.sqlite").runs()[0]
    assert run.status == "failed"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert run.run_id not in [c.name for c in service.list_containers()]  # nothing left stored
    assert left_in(batch_client(emulator)) == ([], [])


def test_a_client_killed_while_storing_the_sources_is_started_afresh_by_the_next_run(
    azurite: Azurite, emulator: Emulator, secrets_env: None, tmp_path: Path,  # noqa: F811
    shardrun_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client dies (nothing of it runs after) once the sources are stored, before the tasks
    are recorded: the next `run` abandons that run, deletes its container and sources by its id,
    and a new run gives the right result."""
    from shardrun.core import prepare

    class Killed(BaseException):
        pass

    def store_then_die(*args: Any) -> None:
        original(*args)
        raise Killed

    original = prepare.put_sources
    with monkeypatch.context() as patch:
        patch.setattr(prepare, "put_sources", store_then_die)
        patch.setattr(prepare, "abandon", lambda *args: None)  # a dead client cleans nothing up
        batch = job_file(tmp_path / "batch", "lines", {
            "run": {"backend": "azure-batch", "storage": "blob", "timeout": "2m"},
            "storage": {"account_url": azurite.account_url, "auth": "key"},
            "batch": {"account_url": emulator.url, "account_name": emulator.config.account_name,
                      "auth": "shared_key", "dedicated_nodes": 1, "poll_interval": 0.3,
                      "pieces": "by-reference"},
        })
        with pytest.raises(Killed):
            main(["run", str(batch)])
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    dead = ledger.runs()[0]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert dead.status == "splitting" and dead.run_id in [c.name for c in service.list_containers()]

    assert main(["run", str(batch)]) == 0, capsys.readouterr().err
    runs = {r.run_id: r for r in Ledger(shardrun_home / "ledger.sqlite").runs()}
    assert runs[dead.run_id].status == "failed" and len(runs) == 2
    assert dead.run_id not in [c.name for c in service.list_containers()]
    local = job_file(tmp_path / "local", "lines", {})
    assert main(["run", str(local)]) == 0
    assert (tmp_path / "batch" / "result.out").read_bytes() == (tmp_path / "local" / "result.out").read_bytes()
