"""User-assigned managed identities: a pool's, and what its nodes do with them.

A pool gets identities only through the management plane (management.py), as at the service: the
data plane's `BatchPoolCreateOptions` has no `identity`, and `BatchPool.identity` is read-only.
Resource files, output files' `OutputFileBlobContainerDestination` and container registries name
one with `identityReference: {resourceId}`. A node can act only as one of its pool's identities;
any other reference fails on the node, as an access error on that file (the transfer code is
chosen in files.py).

Development mode: `EmulatorConfig.identity_storage` maps an identity's resource ID (or "*", any
identity of the pool) to the storage credential the identity stands for here: a connection string
with `AccountName` and `AccountKey` (Azurite's, say), or a bare account key, whose account name then
comes from the URL. An identity without an entry has no role on storage: its requests are denied.
The credential never reaches a log, an error or the state file.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_property

ANY_IDENTITY = "*"
USER_ASSIGNED = "UserAssigned"
# Made-up but stable client and principal IDs: the same resource ID always gets the same ones.
_NAMESPACE = uuid.UUID("6f1c7a52-2b1e-4d7e-9a55-3d1c2a7e0b10")


class IdentityDenied(Exception):
    """The node cannot use this identity for storage; the text names why, never a credential."""


@dataclass(frozen=True)
class NodeIdentities:
    """A node's view: its pool's identities, and the storage credential each one maps to."""

    assigned: frozenset[str] = frozenset()  # lower-cased resource IDs of the pool's identities
    storage: Mapping[str, str] = field(default_factory=dict)  # lower-cased ID or "*" -> credential

    def storage_credential(self, reference: Mapping[str, Any], url: str) -> dict[str, str]:
        """The account-key credential for a URL reached with `identityReference`, or IdentityDenied."""
        resource_id = str(reference.get("resourceId") or "")
        if resource_id.lower() not in self.assigned:
            raise IdentityDenied(f"the identity {resource_id or '(none)'} is not assigned to the pool")
        secret = self.storage.get(resource_id.lower(), self.storage.get(ANY_IDENTITY))
        if secret is None:
            raise IdentityDenied(f"the identity {resource_id} has no access to this storage account")
        return account_key_credential(secret, url)


def account_key_credential(secret: str, url: str) -> dict[str, str]:
    """{account_name, account_key} from a connection string, or from a bare key and the URL."""
    if "AccountKey=" in secret:
        parts = dict(p.split("=", 1) for p in secret.split(";") if "=" in p)
        return {
            "account_name": parts.get("AccountName") or account_of(url),
            "account_key": parts["AccountKey"],
        }
    return {"account_name": account_of(url), "account_key": secret}


def account_of(url: str) -> str:
    """The storage account of a blob URL: `acct.blob.core.windows.net/...` or path-style
    `http://127.0.0.1:10000/acct/...` (Azurite)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if "." in host and not host.replace(".", "").isdigit():
        return host.split(".", 1)[0]
    return parts.path.lstrip("/").split("/", 1)[0]


def node_identities(pool: Mapping[str, Any] | None, storage: Mapping[str, str]) -> NodeIdentities:
    return NodeIdentities(assigned_ids(pool), {k.lower(): v for k, v in storage.items()})


def assigned_ids(pool: Mapping[str, Any] | None) -> frozenset[str]:
    identity = (pool or {}).get("identity") or {}
    if identity.get("type") != USER_ASSIGNED:
        return frozenset()
    return frozenset(i["resourceId"].lower() for i in identity.get("userAssignedIdentities", []))


def pool_identity(resource_ids: list[str]) -> dict[str, Any]:
    """`BatchPool.identity` as the data plane shows it, with each identity's client and principal ID."""
    return {
        "type": USER_ASSIGNED,
        "userAssignedIdentities": [
            {"resourceId": rid, **identity_ids(rid)} for rid in resource_ids
        ],
    }


def identity_ids(resource_id: str) -> dict[str, str]:
    return {
        "clientId": str(uuid.uuid5(_NAMESPACE, "client:" + resource_id.lower())),
        "principalId": str(uuid.uuid5(_NAMESPACE, "principal:" + resource_id.lower())),
    }


def check_registries(registries: list[dict[str, Any]], assigned: frozenset[str]) -> None:
    """A registry logs in with username and password, or with one of the pool's identities."""
    for registry in registries:
        server = registry.get("registryServer", "docker.io")
        reference = registry.get("identityReference")
        if reference is not None:
            if str(reference.get("resourceId") or "").lower() not in assigned:
                raise bad_property(
                    "containerRegistries.identityReference",
                    reference.get("resourceId", ""),
                    "the identity is not one of the pool's (pools get identities through the "
                    "management plane)",
                )
        elif "password" not in registry:
            raise bad_property(
                "containerRegistries", server, "a registry needs a password, or an identityReference"
            )
