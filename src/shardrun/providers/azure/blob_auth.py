"""Connecting to Blob Storage: credentials, client settings, and errors that never carry a secret.

Credentials come from a secret source (see shardrun.core.secrets), in this order when `auth = "auto"`:
a connection string; an account URL with an account key; an account URL with a SAS token; an account
URL with DefaultAzureCredential (az login, managed identity, workload identity...).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient

from shardrun.core.errors import ShardrunError, UsageError
from shardrun.core.secrets import Secret, SecretSource, open_secret_source
from shardrun.providers.azure.retry import AZURE_RETRY, last_tries, reset_tries

_SECRET_PATTERNS = [
    re.compile(r"(?i)(sig=)[^&\s\"']+"),
    re.compile(r"(?i)(AccountKey=)[^;\s\"']+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"']+"),
    re.compile(r"(?i)(Authorization:?\s*)(SharedKey|Bearer)\s+\S+"),
]


def scrub(text: str, *secrets: Secret | None) -> str:
    """Remove SAS signatures, account keys and the given secret values from a message."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "REDACTED", text)
    for secret in secrets:
        if secret is not None and len(secret.reveal()) >= 8:
            text = text.replace(secret.reveal(), "REDACTED")
    return text


@dataclass(frozen=True, repr=False)
class BlobConnection:
    """A ready service client plus what SAS generation needs. repr never shows the key."""

    service: BlobServiceClient
    account_url: str
    account_name: str
    auth: str  # connection_string | key | sas | default_credential
    account_key: Secret | None = None
    sas_token: Secret | None = None
    retries: int = 3
    client_options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"BlobConnection({self.account_url!r}, auth={self.auth!r})"


def client_options(retries: int, max_concurrency: int) -> dict[str, Any]:
    """Keyword arguments for every Blob client: shardrun's retry rule (retry.py) with `retries`
    retries per request, its timeouts, and a connection pool as big as the transfers."""
    session = requests.Session()
    # requests keeps 10 connections per host by default; more threads than that would open and
    # throw away a connection per request.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max_concurrency * 2 + 4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return {
        "transport": RequestsTransport(session=session, session_owner=False),
        **AZURE_RETRY.with_tries(retries + 1).client_options(storage=True),
    }


def account_name_from_url(url: str) -> str:
    """https://acct.blob.core.windows.net -> acct; http://127.0.0.1:10000/devstoreaccount1 -> that."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if re.fullmatch(r"[\d.]+|localhost|\[.*\]|[0-9a-f:]+", host) or "." not in host:
        path = parts.path.strip("/")
        if path:
            return path.split("/")[0]  # path-style (Azurite)
    return host.split(".")[0]


def connect(
    *,
    settings: Any = None,
    secrets: Any = None,
    base_dir: Path | None = None,
    connection_string: str | Secret | None = None,
    account_url: str | None = None,
    account_name: str | None = None,
    account_key: str | Secret | None = None,
    sas_token: str | Secret | None = None,
    credential: Any = None,
    retries: int = 3,
    max_concurrency: int = 16,
) -> BlobConnection:
    """Build a connection from a job's [storage]/[secrets] sections, or from direct arguments."""
    if settings is not None:
        source = _secret_source(secrets, base_dir)
        account_url = account_url or settings.account_url
        account_name = account_name or settings.account_name
        auth = settings.auth
        if auth in ("auto", "connection_string") and connection_string is None:
            connection_string = source.get(settings.connection_string_secret)
            if connection_string is None and auth == "connection_string":
                raise _missing(settings.connection_string_secret, source)
        if auth in ("auto", "key") and connection_string is None and account_key is None:
            account_key = source.get(settings.account_key_secret) if account_url else None
            if account_key is None and auth == "key":
                raise _missing(settings.account_key_secret, source, needs_url=not account_url)
        if auth in ("auto", "sas") and connection_string is None and account_key is None:
            sas_token = sas_token or (source.get(settings.sas_secret) if account_url else None)
            if sas_token is None and auth == "sas":
                raise _missing(settings.sas_secret, source, needs_url=not account_url)
        if auth == "default_credential":
            credential = credential or "default"
    options = client_options(retries, max_concurrency)
    if connection_string is not None:
        cs = connection_string if isinstance(connection_string, Secret) else Secret("conn", connection_string)
        try:
            service = BlobServiceClient.from_connection_string(cs.reveal(), **options)
        except (ValueError, AttributeError, IndexError):
            raise ShardrunError(
                "the storage connection string is malformed (expected 'Key=Value;' pairs such as "
                "AccountName=...;AccountKey=...;BlobEndpoint=...)"
            ) from None
        key = getattr(service.credential, "account_key", None)
        sas = _query_sas(service.url)
        return BlobConnection(service, service.url.split("?")[0].rstrip("/"), service.account_name or "",
                              "connection_string", Secret("account key", key) if key else None,
                              sas, retries, options)
    if not account_url:
        raise UsageError(
            "blob storage needs an account: set the secret AZURE_STORAGE_CONNECTION_STRING, or "
            "[storage] account_url with an account key, a SAS token or an Azure login"
        )
    name = account_name or account_name_from_url(account_url)
    if account_key is not None:
        key = account_key if isinstance(account_key, Secret) else Secret("account key", account_key)
        service = BlobServiceClient(account_url, credential={"account_name": name,
                                                             "account_key": key.reveal()}, **options)
        return BlobConnection(service, account_url, name, "key", account_key=key, retries=retries,
                              client_options=options)
    if sas_token is not None:
        sas = sas_token if isinstance(sas_token, Secret) else Secret("sas", sas_token)
        service = BlobServiceClient(account_url, credential=sas.reveal().lstrip("?"), **options)
        return BlobConnection(service, account_url, name, "sas", sas_token=sas, retries=retries,
                              client_options=options)
    if credential in (None, "default"):
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise UsageError(
                "no storage key or SAS found, and DefaultAzureCredential needs azure-identity: "
                "pip install 'shardrun[azure]'"
            ) from None
        credential = DefaultAzureCredential()
    service = BlobServiceClient(account_url, credential=credential, **options)
    return BlobConnection(service, account_url, name, "default_credential", retries=retries,
                          client_options=options)


def _secret_source(secrets: Any, base_dir: Path | None) -> SecretSource:
    return open_secret_source(secrets, base_dir)


def _missing(name: str, source: SecretSource, needs_url: bool = False) -> ShardrunError:
    if needs_url:
        return UsageError(f"[storage] account_url is needed with the secret {name!r}")
    return UsageError(f"secret {name!r} not found in the {source.kind} secret source")


def _query_sas(url: str) -> Secret | None:
    query = urlsplit(url).query
    return Secret("sas", query) if "sig=" in query else None


@contextlib.contextmanager
def azure_errors(action: str, where: str, *secrets: Secret | None) -> Iterator[None]:
    """Turn azure-core errors into one-line ShardrunErrors that name no secret.

    Not-found errors pass through: callers decide what a missing blob means.
    """
    reset_tries()
    try:
        yield
    except ResourceNotFoundError:
        raise
    except ResourceExistsError as err:
        raise ShardrunError(f"{action}: {where} already exists ({_code(err)})") from _clean(err, secrets)
    except ClientAuthenticationError as err:
        raise ShardrunError(
            f"{action}: {where} refused the credentials ({_code(err) or 'authentication failed'}); "
            "check the account key, SAS or login"
        ) from _clean(err, secrets)
    except HttpResponseError as err:
        if err.status_code == 403:
            raise ShardrunError(
                f"{action}: {where} refused the credentials ({_code(err)}); "
                "check the account key, SAS or login, and the SAS permissions and expiry"
            ) from _clean(err, secrets)
        raise ShardrunError(
            f"{action}: {where} answered {err.status_code} {_code(err)}".rstrip() + _tries(" ")
        ) from _clean(err, secrets)
    except (ServiceRequestError, ServiceResponseError) as err:
        raise ShardrunError(
            f"{action}: cannot reach {where} (gave up{_tries(' ') or ' after the retries'}: "
            f"{_reason(err)})"
        ) from _clean(err, secrets)
    except AzureError as err:
        raise ShardrunError(f"{action}: {where}: {type(err).__name__}") from _clean(err, secrets)


def _tries(sep: str) -> str:
    """' after 4 tries over 9 s' when the last request of this thread was retried, else ''."""
    tries = last_tries()
    return f"{sep}{tries}" if tries is not None and tries.count > 1 else ""


def _code(err: HttpResponseError) -> str:
    return str(getattr(err, "error_code", None) or getattr(err, "reason", "") or "")


def _reason(err: AzureError) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "unknown host"
    return scrub(text)[:160]


def _clean(err: AzureError, secrets: tuple[Secret | None, ...]) -> Exception:
    """The chained cause, with a scrubbed message: tracebacks must not leak a SAS either."""
    return RuntimeError(scrub(f"{type(err).__name__}: {err}", *secrets)[:2000])
