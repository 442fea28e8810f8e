"""Secrets from Azure Key Vault: `[secrets] source = "keyvault"`.

Imported only when a job asks for Key Vault (see `shardrun.core.secrets`), so that importing shardrun
never imports the Azure SDK. Signs in with `DefaultAzureCredential` (az login, managed identity,
workload identity...) unless a credential is given; reading needs the vault's 'Key Vault Secrets
User' role (or, on vaults using access policies, a policy allowing secret 'get').

Key Vault names allow only letters, digits and '-': a shardrun name is looked up through
`[secrets] names` first, else with '_' turned into '-' and lower-cased (AZURE_STORAGE_KEY ->
azure-storage-key). Values, and misses, are cached for the life of the process.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shardrun.core.errors import UsageError
from shardrun.core.secrets import Secret, SecretError, _check_name
from shardrun.providers.azure.retry import AZURE_RETRY

VAULT_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
READER_ROLE = "Key Vault Secrets User"

# The SDK defaults (10 retries, 300 s connect timeout) would leave a CLI hanging for minutes on
# a wrong vault_url; shardrun's retry rule (retry.py) with a few quick tries is enough for a
# handful of reads.
VAULT_RETRIES = 3
VAULT_READ_TIMEOUT = 60

# (vault url, vault secret name) -> value, or None for a secret the vault does not have.
_CACHE: dict[tuple[str, str], Secret | None] = {}
# One lock for all reads: a handful of secrets per process, and it guarantees one request per name
# even when backend threads ask at once.
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every cached value (for tests, or after rotating a secret in a long-lived process)."""
    with _LOCK:
        _CACHE.clear()


@functools.cache
def _default_credential() -> TokenCredential:
    # One per process: it caches its tokens, and `az login` lookups take a second each.
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def vault_secret_name(name: str, names: Mapping[str, str] | None = None) -> str:
    """The Key Vault name for shardrun's secret `name`: from `names`, else '_' -> '-', lower case."""
    mapped = (names or {}).get(name)
    return mapped if mapped is not None else name.replace("_", "-").lower()


class KeyVaultSecrets:
    """Secrets read from one Key Vault. `credential` and client kwargs (`transport=`...) are for tests."""

    kind = "keyvault"

    def __init__(
        self,
        vault_url: str,
        names: Mapping[str, str] | None = None,
        credential: TokenCredential | None = None,
        **client_kwargs: Any,
    ) -> None:
        self.vault_url = _check_vault_url(vault_url)
        self.names = dict(names or {})
        for name, mapped in self.names.items():
            if not VAULT_NAME_RE.match(mapped):
                raise UsageError(
                    f"[secrets] names maps {name!r} to {mapped!r}, which is not a Key Vault secret name "
                    "(letters, digits and '-' only, at most 127)"
                )
        self._credential = credential
        rule = AZURE_RETRY.with_tries(int(client_kwargs.pop("retry_total", VAULT_RETRIES)) + 1)
        self._client_kwargs = {**rule.client_options(), "read_timeout": VAULT_READ_TIMEOUT,
                               **client_kwargs}
        self._client: SecretClient | None = None

    def __repr__(self) -> str:
        return f"KeyVaultSecrets({self.vault_url!r})"

    def describe(self, name: str) -> str:
        """Where `name` is looked up, for messages about a missing secret."""
        return f"Key Vault {self.vault_url} (as {self.vault_name(name)!r})"

    def vault_name(self, name: str) -> str:
        return vault_secret_name(name, self.names)

    def get(self, name: str) -> Secret | None:
        _check_name(name)
        vault_name = self.vault_name(name)
        if not VAULT_NAME_RE.match(vault_name):
            raise UsageError(
                f"secret {name!r} becomes {vault_name!r}, which Key Vault does not allow (letters, digits "
                f"and '-' only): map it in [secrets] names, e.g. names = {{ {name} = \"my-name\" }}"
            )
        key = (self.vault_url, vault_name)
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = self._fetch(vault_name)
            cached = _CACHE[key]
        return None if cached is None else Secret(name, cached.reveal())

    def _fetch(self, vault_name: str) -> Secret | None:
        if self._client is None:
            credential = self._credential or _default_credential()
            self._client = SecretClient(self.vault_url, credential, **self._client_kwargs)
        try:
            value = self._client.get_secret(vault_name).value
        except ResourceNotFoundError:
            return None
        except (AzureError, ValueError) as err:
            raise _error(err, self.vault_url, vault_name) from err
        # An empty value counts as missing, as an empty environment variable does.
        return Secret(vault_name, value) if value else None


def _check_vault_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
        raise UsageError(
            f"[secrets] vault_url must look like 'https://NAME.vault.azure.net', not "
            f"{parts.scheme}://{parts.netloc}{parts.path}"
        )
    return f"https://{parts.netloc.lower()}"


def _error(err: Exception, vault: str, vault_name: str) -> SecretError:
    """One line naming the vault, the secret's name and what to do; never the value."""
    what = f"Key Vault {vault} secret {vault_name!r}"
    if isinstance(err, ClientAuthenticationError):
        return SecretError(
            f"cannot sign in to read {what} ({type(err).__name__}): run 'az login', or give this "
            "machine a managed identity, with access to the vault"
        )
    if isinstance(err, HttpResponseError):
        code = _code(err)
        if err.status_code == 403 and "firewall" in code.lower():
            return SecretError(
                f"{what}: the vault's firewall refused this machine ({code}); allow its network or IP "
                "address in the vault's networking settings"
            )
        if err.status_code == 403:
            return SecretError(
                f"{what}: access denied (403 {code}); grant the signed-in identity the "
                f"'{READER_ROLE}' role on the vault (or, on a vault using access policies, a policy "
                "allowing secret 'get')"
            )
        return SecretError(f"{what}: the vault answered {err.status_code} {code}".rstrip())
    if isinstance(err, (ServiceRequestError, ServiceResponseError)):
        return SecretError(
            f"cannot reach Key Vault {vault} to read secret {vault_name!r} ({type(err).__name__}); "
            "check [secrets] vault_url and the network"
        )
    if isinstance(err, ValueError):
        # The SDK refuses a server whose auth challenge names another resource than Key Vault.
        return SecretError(f"{what}: {vault} does not look like a Key Vault ({str(err)[:200]})")
    return SecretError(f"{what}: {type(err).__name__}")


def _code(err: HttpResponseError) -> str:
    """The most specific error code: Key Vault puts the useful one (ForbiddenByRbac...) inside."""
    error = err.error
    inner = error.innererror if error is not None else None
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    return str(inner_code or (error.code if error is not None else None) or err.reason or "")
