"""Secret sources, and the job file's [storage] and [secrets] sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.core.errors import JobFileError, UsageError
from shardrun.core.secrets import EnvSecrets, FileSecrets, Secret, SecretError, open_source, register_source
from shardrun.core.spec import load_spec
from shardrun.providers.azure.blob import open_blob_store
from shardrun.providers.azure.blob_auth import account_name_from_url, scrub
from shardrun.providers.azure.settings import storage_settings

from .fixtures.azurite import DEV_KEY, Azurite
from .helpers import lines_job


def test_secret_hides_its_value() -> None:
    s = Secret("AZURE_STORAGE_KEY", "hunter2-value")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"
    assert s.reveal() == "hunter2-value"


def test_env_source() -> None:
    source = EnvSecrets({"A_KEY": "value", "EMPTY": ""})
    found = source.get("A_KEY")
    assert found is not None and found.reveal() == "value"
    assert source.get("EMPTY") is None and source.get("MISSING") is None
    with pytest.raises(UsageError):
        source.get("not a name")


def test_file_source(tmp_path: Path) -> None:
    (tmp_path / "conn").write_text("secret-value\n")
    (tmp_path / "conn").chmod(0o600)
    source = open_source("file", path=tmp_path)
    found = source.get("conn")
    assert found is not None and found.reveal() == "secret-value"
    assert source.get("absent") is None
    (tmp_path / "open").write_text("x")
    (tmp_path / "open").chmod(0o644)
    with pytest.raises(SecretError, match="readable by others"):
        source.get("open")
    with pytest.raises(SecretError, match="does not exist"):
        FileSecrets(tmp_path / "nope")


def test_sources_can_be_added() -> None:
    class Vault:
        kind = "vault-for-test"

        def get(self, name: str) -> Secret | None:
            return Secret(name, "from the vault")

        def describe(self, name: str) -> str:
            return "the test vault"

    register_source("vault-for-test", Vault)
    found = open_source("vault-for-test").get("x")
    assert found is not None and found.reveal() == "from the vault"
    with pytest.raises(UsageError, match="unknown secret source"):
        open_source("nothing-like-this")


def test_scrub_removes_signatures_and_keys() -> None:
    text = ("GET http://h/c/b?sv=2025&sig=abc%2Bdef&se=x failed; "
            f"DefaultEndpointsProtocol=http;AccountKey={DEV_KEY};BlobEndpoint=x")
    clean = scrub(text, Secret("k", "my-own-secret"))
    assert "abc%2Bdef" not in clean and DEV_KEY not in clean and "sig=REDACTED" in clean
    assert scrub("uses my-own-secret here", Secret("k", "my-own-secret")) == "uses REDACTED here"


def test_account_name_from_url() -> None:
    assert account_name_from_url("https://acct.blob.core.windows.net") == "acct"
    assert account_name_from_url("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert account_name_from_url("http://localhost:10000/devstoreaccount1/") == "devstoreaccount1"


def _job_with(tmp_path: Path, extra: str) -> Path:
    job = lines_job(tmp_path, n_lines=4, per_task=2, storage="blob")
    with job.open("a") as f:
        f.write(extra)
    return job


def test_storage_section_defaults_and_validation(tmp_path: Path) -> None:
    spec = load_spec(lines_job(tmp_path))
    assert spec.run.storage == "local"  # the default is unchanged
    assert storage_settings(spec).connection_string_secret == "AZURE_STORAGE_CONNECTION_STRING"
    assert spec.secrets.source == "env"
    spec = load_spec(_job_with(tmp_path, '[storage]\naccount_url = "https://a.blob.core.windows.net/"\n'
                                         'sas_expiry = "2h"\n'))
    assert storage_settings(spec).account_url == "https://a.blob.core.windows.net"
    assert storage_settings(spec).sas_expiry == 7200


@pytest.mark.parametrize("extra, message", [
    ('[storage]\naccount_key = "abc"\n', "unknown key 'account_key' in [storage]"),
    ('[storage]\naccount_url = "https://a.blob.core.windows.net/?sv=1&sig=abc"\n', "put a SAS in a secret"),
    ('[storage]\nsas_secret = "sv=2025&sig=x"\n', "must be the name of a secret"),
    ('[storage]\nauth = "password"\n', "[storage] auth"),
    ('[secrets]\nsource = "file"\n', "needs path"),
    ('[secrets]\nsource = "env"\nvault = "x"\n', "unknown key 'vault' in [secrets]"),
])
def test_storage_settings_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(JobFileError, match=message.replace("[", r"\[").replace("?", r"\?")):
        load_spec(_job_with(tmp_path, extra))


def test_explicit_auth_names_the_missing_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    spec = load_spec(_job_with(tmp_path, '[storage]\naccount_url = "http://127.0.0.1:1/devstoreaccount1"\n'
                                         'auth = "key"\naccount_key_secret = "MY_KEY"\n'))
    with pytest.raises(UsageError, match="secret 'MY_KEY' not found in the env secret source"):
        open_blob_store(settings=storage_settings(spec), secrets=spec.secrets, base_dir=spec.base_dir)


def test_sas_token_auth(azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user-supplied SAS (from the secret source) works for the client side too."""
    import datetime as dt

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    token = generate_account_sas("devstoreaccount1", DEV_KEY, ResourceTypes(service=True, container=True,
                                 object=True), AccountSasPermissions(read=True, write=True, create=True,
                                 list=True, add=True), dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    monkeypatch.setenv("MY_SAS", token)
    spec = load_spec(_job_with(tmp_path, f'[storage]\naccount_url = "{azurite.account_url}"\n'
                                         'auth = "sas"\nsas_secret = "MY_SAS"\n'))
    store = open_blob_store(settings=storage_settings(spec), secrets=spec.secrets, base_dir=spec.base_dir)
    store.put_bytes("sas-auth-test/config/c", b"via sas")
    assert store.get_bytes("sas-auth-test/config/c") == b"via sas"
    assert token not in repr(store) and token not in repr(store.conn)
