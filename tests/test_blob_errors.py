"""Bad input gives one clear line, with no secret in it, and never hangs."""

from __future__ import annotations

import base64
import traceback
import uuid
from pathlib import Path

import pytest

from shardrun.cli import main
from shardrun.core.errors import ShardrunError
from shardrun.providers.azure.blob import open_blob_store

from .fixtures.azurite import DEV_KEY, Azurite
from .helpers import closed_port, lines_job

WRONG_KEY = base64.b64encode(b"w" * 64).decode()


def _everything_printed(err: BaseException) -> str:
    """The message and the whole chained traceback, as a user or a log would see them."""
    return "".join(traceback.format_exception(err))


def _ns() -> str:
    return f"er-{uuid.uuid4().hex[:12]}"


def test_wrong_key(azurite: Azurite) -> None:
    store = open_blob_store(account_url=azurite.account_url, account_key=WRONG_KEY, retries=0)
    with pytest.raises(ShardrunError, match="refused the credentials") as info:
        store.put_bytes(f"{_ns()}/config/c", b"x")
    message = str(info.value)
    assert "\n" not in message and azurite.account_url in message
    printed = _everything_printed(info.value)
    assert WRONG_KEY not in printed and DEV_KEY not in printed


def test_key_that_is_not_base64(azurite: Azurite) -> None:
    store = open_blob_store(account_url=azurite.account_url, account_key="not a key at all", retries=0)
    with pytest.raises(ShardrunError) as info:
        store.size(f"{_ns()}/config/c")
    assert "not a key at all" not in _everything_printed(info.value)


def test_malformed_connection_string() -> None:
    secret = "AccountKey=" + WRONG_KEY
    with pytest.raises(ShardrunError, match="connection string is malformed") as info:
        open_blob_store(connection_string=f"{secret};this part has no equals sign")
    assert WRONG_KEY not in _everything_printed(info.value)


def test_unreachable_endpoint_fails_after_bounded_retries() -> None:
    with closed_port() as port:  # nothing listens there
        store = open_blob_store(account_url=f"http://127.0.0.1:{port}/devstoreaccount1",
                                account_key=DEV_KEY, retries=1)
        with pytest.raises(ShardrunError, match="cannot reach") as info:
            store.put_bytes(f"{_ns()}/config/c", b"x")
    assert "gave up after 2 tries over" in str(info.value)  # retries = 1: one retry
    assert DEV_KEY not in _everything_printed(info.value)


def test_sas_signature_is_scrubbed_from_errors(azurite: Azurite) -> None:
    good = open_blob_store(connection_string=azurite.connection_string)
    ns = _ns()
    good.put_bytes(f"{ns}/inputs/t/x", b"x")
    url = good.read_url(f"{ns}/inputs/t/x", 600)
    signature = url.split("sig=")[1].split("&")[0]
    from shardrun.providers.azure.sas import upload_url

    src = Path(__file__)  # any file: the upload must be refused by the read-only SAS
    with pytest.raises(ShardrunError, match="refused the credentials") as info:
        upload_url(url, src, good.task_client_options())
    assert signature not in _everything_printed(info.value)


def test_cli_run_with_a_wrong_key_is_one_line(azurite: Azurite, tmp_path: Path, shardrun_home: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    job = lines_job(tmp_path, n_lines=10, per_task=5, storage="blob")
    with job.open("a") as f:
        f.write(f'[storage]\naccount_url = "{azurite.account_url}"\nretries = 0\n')
    monkeypatch.setenv("AZURE_STORAGE_KEY", WRONG_KEY)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    assert main(["run", "-q", str(job)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("shardrun: error: ") and "refused the credentials" in err
    assert len(err.splitlines()) == 1 and WRONG_KEY not in err
    assert WRONG_KEY.encode() not in (shardrun_home / "ledger.sqlite").read_bytes()


def test_cli_run_without_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    job = lines_job(tmp_path, n_lines=10, per_task=5, storage="blob")
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["run", "-q", str(job)]) == 2
    assert "blob storage needs an account" in capsys.readouterr().err
