"""A job run locally with `storage = "blob"` against Azurite; cleanup and gc of its containers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from shardrun.cli import main
from shardrun.core.ledger import Ledger, RunRow
from shardrun.core.pipeline import run_job
from shardrun.core.provider import GcRequest
from shardrun.core.spec import parse_age
from shardrun.providers.azure.blob import META_HEARTBEAT, META_STATE, container_metadata, open_blob_store
from shardrun.providers.azure.gc import collect

from .fixtures.azurite import DEV_KEY, Azurite
from .helpers import APPS, PY, lines_job, write_job

DAY = 86400.0


def _blob_job(folder: Path, azurite: Azurite) -> Path:
    (folder / "big.txt").write_text("".join(f"line {i}\n" for i in range(12)))
    (folder / "ref.db").write_text("reference data")
    secrets = folder / "secrets"
    secrets.mkdir()
    (secrets / "AZURE_STORAGE_KEY").write_text(DEV_KEY + "\n")
    (secrets / "AZURE_STORAGE_KEY").chmod(0o600)
    return write_job(folder, {
        "job": {"name": "blob demo"},
        "app": {"command": [PY, str(APPS / "envdump.py")], "files": ["ref.db"]},
        "split": {"input": "big.txt", "method": "lines", "per_task": 4},
        "merge": {"method": "concat", "output": "result.jsonl"},
        "run": {"storage": "blob", "concurrency": 2, "timeout": "5m"},
        "storage": {"account_url": azurite.account_url, "max_concurrency": 4},
        "secrets": {"source": "file", "path": "secrets"},
    })


def test_demo_job_runs_against_blob_and_cleans_up_exactly(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)  # in the client's environment: tasks must not see it
    job = _blob_job(tmp_path, azurite)
    assert main(["run", "-q", str(job)]) == 0, capsys.readouterr().err
    run_id = Ledger(shardrun_home / "ledger.sqlite").runs()[0].run_id

    rows = [json.loads(line) for line in (tmp_path / "result.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == ["".join(f"line {i}\n" for i in range(s, s + 4))
                                          for s in (0, 4, 8)]
    for r in rows:
        assert r["leaked"] == []
        assert r["ref"] == "reference data"  # a shared file, fetched through a read-only URL
        assert Path(r["INPUT_PATH"]).is_relative_to(Path(r["cwd"]))  # downloaded, like on a node

    raw = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = raw.get_container_client(run_id)
    names = sorted(b.name for b in container.list_blobs())
    assert "outputs/task-00001/output.txt" in names
    assert "logs/task-00001/1/stdout.txt" in names and "config/" not in " ".join(names)
    for name in names:  # no key or signature in anything stored, logs included
        data = container.get_blob_client(name).download_blob().readall()
        assert DEV_KEY.encode() not in data and b"sig=" not in data
    ledger_bytes = (shardrun_home / "ledger.sqlite").read_bytes()
    assert DEV_KEY.encode() not in ledger_bytes and b"sig=" not in ledger_bytes

    capsys.readouterr()
    assert main(["logs", run_id, "task-00002", "--stdout"]) == 0

    # Look-alikes: names that contain the run id; one even carries shardrun metadata of another run.
    lookalikes = [f"{run_id}-copy", f"old-{run_id}"]
    raw.create_container(lookalikes[0])
    raw.create_container(lookalikes[1], metadata=container_metadata("some-other-run"))
    assert main(["cleanup", run_id]) == 0
    assert f"blob store: {run_id}" in capsys.readouterr().out
    existing = {c.name for c in raw.list_containers()}
    assert run_id not in existing
    assert set(lookalikes) <= existing


def _run_row(run_id: str, status: str) -> RunRow:
    return RunRow(run_id, "j", f"/nowhere/{run_id}.toml", "f", "{}", "local", "blob", status,
                  time.time() - 10 * DAY, None, None, None)


def test_gc_lists_then_deletes_only_orphaned_shardrun_containers(
    azurite: Azurite, shardrun_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = BlobServiceClient.from_connection_string(azurite.connection_string)
    tag = str(int(time.time() * 1000))[-8:]
    old = time.time() - 8 * DAY
    orphan, live, finished, recent = (f"gc{x}-{tag}" for x in ("orphan", "live", "done", "recent"))
    no_meta, mismatched = f"gcnometa-{orphan}", f"gcmismatch-{tag}"
    raw.create_container(orphan, metadata=container_metadata(orphan, old))
    raw.create_container(live, metadata=container_metadata(live, old))
    raw.create_container(finished, metadata=container_metadata(finished, old))
    raw.create_container(recent, metadata=container_metadata(recent))
    raw.create_container(no_meta)  # its name contains the orphan's run id: still not ours
    raw.create_container(mismatched, metadata=container_metadata("another-run", old))
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    ledger.create_run(_run_row(live, "interrupted"), [])
    ledger.create_run(_run_row(finished, "succeeded"), [])
    ledger.close()

    store = open_blob_store(connection_string=azurite.connection_string)
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    listed = collect(GcRequest(parse_age("7d"), False, ledger), store=store)
    ledger.close()
    # Only this test's containers: the Azurite is the session's, and other tests leave theirs.
    assert {(item.resource_id, item.why, deleted) for item, deleted in listed
            if item.resource_id.endswith(tag)} == {
        (orphan, "not in this ledger, last seen splitting", False), (finished, "run succeeded", False)}

    monkeypatch.setenv("AZURE_STORAGE_KEY", DEV_KEY)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    capsys.readouterr()
    assert main(["gc", "--older-than", "7d", "--account-url", azurite.account_url]) == 0
    out = capsys.readouterr().out
    assert f"would delete blob container {orphan}" in out
    assert f"would delete blob container {finished}" in out
    assert {c.name for c in raw.list_containers()} >= {orphan, finished}  # listing deletes nothing

    assert main(["gc", "--older-than", "7d", "--delete", "--account-url", azurite.account_url]) == 0
    out = capsys.readouterr().out
    assert f"deleted blob container {orphan}" in out
    assert f"deleted blob container {finished}" in out
    existing = {c.name for c in raw.list_containers()}
    assert orphan not in existing and finished not in existing
    assert {live, recent, no_meta, mismatched} <= existing
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    row = ledger.get_run(finished)
    assert row is not None and row.status == "cleaned"
    ledger.close()


def test_parse_age() -> None:
    assert parse_age("7d") == 7 * DAY
    assert parse_age("2w") == 14 * DAY
    assert parse_age("36h") == 36 * 3600
    with pytest.raises(Exception, match="not an age"):
        parse_age("soon")


def test_gc_from_another_home_keeps_runs_whose_heartbeat_is_fresh_or_that_can_be_resumed(
    azurite: Azurite, shardrun_home: Path,
) -> None:
    """The other home's ledger knows none of these runs: only their containers' heartbeats speak."""
    raw = BlobServiceClient.from_connection_string(azurite.connection_string)
    tag = str(int(time.time() * 1000))[-8:]
    old, now = time.time() - 8 * DAY, time.time()
    beats = {
        f"hbalive-{tag}": ("running", now - 30),           # its client is at work: kept
        f"hbdead-{tag}": ("running", now - 3600),          # its client died: resumable, kept
        f"hbpaused-{tag}": ("interrupted", now - 7200),    # Ctrl-C'd: resumable, kept
        f"hbdone-{tag}": ("succeeded", now - 7200),        # over: collected
    }
    for name, (state, beat) in beats.items():
        raw.create_container(name, metadata={**container_metadata(name, old),
                                             META_STATE: state, META_HEARTBEAT: str(int(beat))})
    store = open_blob_store(connection_string=azurite.connection_string)
    ledger = Ledger(shardrun_home / "ledger.sqlite")
    try:
        found = {i.resource_id: i.why for i, _ in collect(GcRequest(0.0, False, ledger), store=store)}
        mine = {k: v for k, v in found.items() if k.endswith(tag)}
        assert mine == {f"hbdone-{tag}": "not in this ledger, last seen succeeded"}
        found = {i.resource_id for i, _ in collect(GcRequest(0.0, False, ledger, include_interrupted=True),
                                                   store=store)}
        assert {k for k in found if k.endswith(tag)} == {f"hbdead-{tag}", f"hbpaused-{tag}", f"hbdone-{tag}"}
    finally:
        ledger.close()


def test_a_blob_run_keeps_a_heartbeat_in_its_container(
    azurite: Azurite, tmp_path: Path, shardrun_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    job = lines_job(tmp_path, n_lines=20, per_task=5)
    job.write_text(job.read_text().replace("[run]\n", '[run]\nstorage = "blob"\n'))
    result = run_job(job)
    assert result.ok
    meta = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        result.run_id).get_container_properties().metadata
    assert meta[META_STATE] == "succeeded" and time.time() - float(meta[META_HEARTBEAT]) < 120
    assert meta["shardrun_run"] == result.run_id  # the base metadata is kept
