"""The Key Vault secret source, against a fake Key Vault plugged in as azure-core's HTTP transport.

The fake answers as the service does: a request without a token gets 401 and a Bearer challenge
(SecretClient's first request is sent without one, to learn the tenant and resource), then
GET /secrets/{name} gives the secret bundle, 404 SecretNotFound or 403 Forbidden.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import CaseInsensitiveDict

from shardrun.core.errors import JobFileError, UsageError
from shardrun.core.secrets import FileSecrets, SecretError, open_secret_source, require
from shardrun.core.spec import load_spec
from shardrun.providers.azure import AzureProvider
from shardrun.providers.azure.blob import open_blob_store
from shardrun.providers.azure.blob_auth import connect
from shardrun.providers.azure.keyvault import KeyVaultSecrets, clear_cache, vault_secret_name
from shardrun.providers.azure.settings import storage_settings

from .fixtures.azurite import DEV_KEY, Azurite
from .helpers import lines_job

TOKEN = "fake-access-token"  # what the fake credential hands out and the fake vault accepts
TENANT = "tenant"
CHALLENGE = (f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
             'resource="https://vault.azure.net"')
_vaults = itertools.count()


class FakeResponse(HttpResponse):
    """An in-memory azure.core.rest response."""

    def __init__(self, request: HttpRequest, status: int, reason: str, body: dict[str, Any] | None,
                 headers: dict[str, str] | None = None) -> None:
        self._request = request
        self._status = status
        self._reason = reason
        self._content = json.dumps(body).encode() if body is not None else b""
        self._headers: CaseInsensitiveDict = CaseInsensitiveDict(headers or {})
        if body is not None:
            self._headers["Content-Type"] = "application/json; charset=utf-8"
        self._headers["Content-Length"] = str(len(self._content))

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self) -> CaseInsensitiveDict:
        return self._headers

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return "utf-8"

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        pass

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self._content)

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content


class FakeVault(HttpTransport):  # type: ignore[type-arg]
    """One Key Vault's secrets endpoint. `log` records (path, had a token, status) per request."""

    def __init__(self, values: dict[str, str], forbidden: set[str] | None = None,
                 firewall: bool = False) -> None:
        self.values = values
        self.forbidden = forbidden or set()
        self.firewall = firewall
        self.log: list[tuple[str, bool, int]] = []

    def send(self, request: HttpRequest, **kwargs: Any) -> FakeResponse:
        response = self._answer(request)
        path = urlsplit(request.url).path
        self.log.append((path, "Authorization" in request.headers, response.status_code))
        return response

    def _answer(self, request: HttpRequest) -> FakeResponse:
        parts = urlsplit(request.url)
        auth = request.headers.get("Authorization")
        if auth != f"Bearer {TOKEN}":
            return FakeResponse(request, 401, "Unauthorized", {"error": {
                "code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                {"WWW-Authenticate": CHALLENGE})
        assert "api-version=" in parts.query
        match = re.fullmatch(r"/secrets/([0-9A-Za-z-]+)/?", parts.path)
        assert request.method == "GET" and match, (request.method, parts.path)
        name = match.group(1)
        if self.firewall:
            return FakeResponse(request, 403, "Forbidden", {"error": {
                "code": "Forbidden", "message": "Client address is not authorized and caller is not a "
                "trusted service.", "innererror": {"code": "ForbiddenByFirewall"}}})
        if name in self.forbidden:
            return FakeResponse(request, 403, "Forbidden", {"error": {
                "code": "Forbidden", "message": f"Caller is not authorized to perform action on resource. "
                f"Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action' Resource: '{name}'",
                "innererror": {"code": "ForbiddenByRbac"}}})
        if name not in self.values:
            return FakeResponse(request, 404, "Not Found", {"error": {
                "code": "SecretNotFound",
                "message": f"A secret with (name/id) {name} was not found in this key vault."}})
        host = f"{parts.scheme}://{parts.netloc}"
        return FakeResponse(request, 200, "OK", {
            "value": self.values[name],
            "id": f"{host}/secrets/{name}/0123456789abcdef0123456789abcdef",
            "attributes": {"enabled": True, "created": 1700000000, "updated": 1700000000,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
            "tags": {},
        })

    def gets(self, name: str) -> int:
        """Authorized requests for one secret: what a cache must keep to one."""
        return sum(1 for path, authorized, _ in self.log if authorized and path.rstrip("/") == f"/secrets/{name}")

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeVault:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


class FakeCredential:
    """A TokenCredential that records what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[tuple[str, ...], str | None]] = []

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        self.asked.append((scopes, tenant_id))
        return AccessToken(TOKEN, int(time.time()) + 3600)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def vault_url() -> str:
    """A new vault host per test: SecretClient caches auth challenges per host for the process."""
    return f"https://shardrun-test-{next(_vaults)}.vault.azure.net"


def make_source(vault: FakeVault, names: dict[str, str] | None = None,
                url: str | None = None) -> tuple[KeyVaultSecrets, FakeCredential]:
    credential = FakeCredential()
    source = KeyVaultSecrets(url or vault_url(), names, credential=credential, transport=vault,
                             retry_total=0)
    return source, credential


def test_reads_a_secret_after_the_challenge_handshake() -> None:
    vault = FakeVault({"storage-account": "account-name-value"})
    source, credential = make_source(vault)
    found = source.get("storage-account")
    assert found is not None and found.reveal() == "account-name-value"
    assert found.name == "storage-account"
    # first a bare request answered by the challenge, then the same request with a token
    assert [(authorized, status) for _, authorized, status in vault.log] == [(False, 401), (True, 200)]
    assert credential.asked == [(("https://vault.azure.net/.default",), TENANT)]


def test_names_are_mapped_then_converted() -> None:
    vault = FakeVault({"prod-storage-key": "mapped-value", "azure-storage-key": "converted-value",
                       "container-registry": "registry-value"})
    source, _ = make_source(vault, names={"AZURE_STORAGE_KEY": "prod-storage-key"})
    found = source.get("AZURE_STORAGE_KEY")
    assert found is not None and found.reveal() == "mapped-value"
    plain, _ = make_source(vault)
    found = plain.get("AZURE_STORAGE_KEY")
    assert found is not None and found.reveal() == "converted-value"
    found = plain.get("container-registry")
    assert found is not None and found.reveal() == "registry-value"
    assert vault.gets("prod-storage-key") == vault.gets("azure-storage-key") == 1
    assert vault_secret_name("Batch_Account") == "batch-account"
    assert vault_secret_name("batch-account", {"batch-account": "Batch-Prod"}) == "Batch-Prod"


def test_missing_secret_is_none_and_require_names_the_vault() -> None:
    vault = FakeVault({})
    source, _ = make_source(vault)
    assert source.get("AZURE_STORAGE_SAS_TOKEN") is None
    with pytest.raises(SecretError, match=r"'AZURE_STORAGE_SAS_TOKEN' not found in Key Vault https://"
                                          r"\S+ \(as 'azure-storage-sas-token'\)"):
        require(source, "AZURE_STORAGE_SAS_TOKEN")


def test_forbidden_gives_a_clear_error_without_the_value() -> None:
    value = "value-that-must-not-leak"
    vault = FakeVault({"batch-account": value}, forbidden={"batch-account"})
    url = vault_url()
    source, _ = make_source(vault, url=url)
    with pytest.raises(SecretError) as info:
        source.get("batch-account")
    message = str(info.value)
    assert url in message and "'batch-account'" in message and "403" in message
    assert "'Key Vault Secrets User'" in message
    assert "\n" not in message and value not in message
    assert isinstance(info.value.__cause__, HttpResponseError)
    assert value not in str(info.value.__cause__) and TOKEN not in str(info.value.__cause__)
    # an error is not cached: granting the role and retrying works in the same process
    vault.forbidden.clear()
    found = source.get("batch-account")
    assert found is not None and found.reveal() == value


def test_firewall_and_unreachable_vault_say_what_to_do() -> None:
    source, _ = make_source(FakeVault({"x": "y"}, firewall=True))
    with pytest.raises(SecretError, match="firewall"):
        source.get("x")

    class Down(FakeVault):
        def send(self, request: HttpRequest, **kwargs: Any) -> FakeResponse:
            raise ServiceRequestError("Failed to establish a new connection: [Errno 111] Connection refused")

    source, _ = make_source(Down({}))
    with pytest.raises(SecretError, match=r"cannot reach Key Vault https://\S+ to read secret 'x'.*vault_url"):
        source.get("x")


def test_values_and_misses_are_cached_for_the_process() -> None:
    vault = FakeVault({"storage-account": "cached-value"})
    url = vault_url()
    source, credential = make_source(vault, url=url)
    for _ in range(3):
        found = source.get("storage-account")
        assert found is not None and found.reveal() == "cached-value"
        assert source.get("absent") is None
    assert vault.gets("storage-account") == 1 and vault.gets("absent") == 1
    # another source for the same vault (another part of shardrun) shares the cache
    again, _ = make_source(vault, url=url + "/")
    found = again.get("storage-account")
    assert found is not None and found.reveal() == "cached-value"
    assert vault.gets("storage-account") == 1
    assert len(credential.asked) == 1  # and the token was reused too


def test_repr_never_shows_the_value() -> None:
    value = "value-that-must-not-print"
    source, _ = make_source(FakeVault({"storage-account": value}))
    found = source.get("storage-account")
    assert found is not None
    for text in (repr(found), str(found), f"{found}", repr(source), repr([found])):
        assert value not in text
    assert repr(found) == "Secret('storage-account', '***')"


def test_bad_names_and_urls_are_refused() -> None:
    source, _ = make_source(FakeVault({}))
    with pytest.raises(UsageError, match=r"Key Vault does not allow .* \[secrets\] names"):
        source.get("conn.string")
    with pytest.raises(UsageError, match="not a valid secret name"):
        source.get("has space")
    with pytest.raises(UsageError, match=r"names maps 'A' to 'a_b'"):
        KeyVaultSecrets(vault_url(), {"A": "a_b"}, credential=FakeCredential())
    with pytest.raises(UsageError, match="vault_url must look like"):
        KeyVaultSecrets("http://shardrun-test.vault.azure.net", credential=FakeCredential())


def _job_with(tmp_path: Path, extra: str) -> Path:
    job = lines_job(tmp_path, n_lines=4, per_task=2, storage="blob")
    with job.open("a") as f:
        f.write(extra)
    return job


def test_job_file_keyvault_section(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="vault_url"):
        load_spec(_job_with(tmp_path, '[secrets]\nsource = "keyvault"\n'))
    spec = load_spec(_job_with(tmp_path, '[secrets]\nsource = "keyvault"\n'
                                         'vault_url = "https://myvault.vault.azure.net"\n'
                                         'names = { AZURE_STORAGE_KEY = "prod-storage-key" }\n'))
    source = open_secret_source(spec.secrets, spec.base_dir)
    assert isinstance(source, KeyVaultSecrets) and source.kind == "keyvault"
    assert source.vault_url == "https://myvault.vault.azure.net"
    assert source.vault_name("AZURE_STORAGE_KEY") == "prod-storage-key"


def test_env_and_file_sources_are_unchanged(tmp_path: Path) -> None:
    assert open_secret_source(None, None).kind == "env"
    spec = load_spec(_job_with(tmp_path, '[secrets]\nsource = "file"\npath = "secret-files"\n'))
    (tmp_path / "secret-files").mkdir()
    source = open_secret_source(spec.secrets, spec.base_dir)
    assert isinstance(source, FileSecrets) and source.folder == tmp_path / "secret-files"


def test_importing_shardrun_does_not_import_the_key_vault_sdk() -> None:
    code = ("import sys, shardrun, shardrun.core.secrets, shardrun.core.spec, shardrun.cli.commands; "
            "assert not [m for m in sys.modules if m.startswith('azure.keyvault')]")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def fake_vault_source(monkeypatch: pytest.MonkeyPatch) -> FakeVault:
    """Make `[secrets] source = "keyvault"` read from a fake vault holding Azurite's key."""
    vault = FakeVault({"azure-storage-key": DEV_KEY})

    def fake_open(self: AzureProvider, name: str, section: Any, base_dir: Path) -> KeyVaultSecrets:
        return KeyVaultSecrets(vault_url=section.vault_url, names=dict(section.names),
                               credential=FakeCredential(), transport=vault, retry_total=0)

    monkeypatch.setattr(AzureProvider, "open_secrets", fake_open)
    return vault


def test_blob_connection_takes_its_key_from_key_vault(tmp_path: Path, fake_vault_source: FakeVault) -> None:
    spec = load_spec(_job_with(tmp_path, '[storage]\naccount_url = "http://127.0.0.1:1/devstoreaccount1"\n'
                                         'auth = "key"\n'
                                         f'[secrets]\nsource = "keyvault"\nvault_url = "{vault_url()}"\n'))
    conn = connect(settings=storage_settings(spec), secrets=spec.secrets, base_dir=spec.base_dir)
    assert conn.auth == "key" and conn.account_key is not None and conn.account_key.reveal() == DEV_KEY
    assert DEV_KEY not in repr(conn) and fake_vault_source.gets("azure-storage-key") == 1


def test_blob_store_end_to_end_with_key_vault(azurite: Azurite, tmp_path: Path,
                                              fake_vault_source: FakeVault) -> None:
    spec = load_spec(_job_with(tmp_path, f'[storage]\naccount_url = "{azurite.account_url}"\n'
                                         'auth = "key"\n'
                                         f'[secrets]\nsource = "keyvault"\nvault_url = "{vault_url()}"\n'
                                         'names = { AZURE_STORAGE_KEY = "azure-storage-key" }\n'))
    store = open_blob_store(settings=storage_settings(spec), secrets=spec.secrets, base_dir=spec.base_dir)
    store.put_bytes("keyvault-auth-test/config/c", b"via key vault")
    assert store.get_bytes("keyvault-auth-test/config/c") == b"via key vault"
    assert DEV_KEY not in repr(store)
