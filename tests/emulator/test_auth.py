"""Shared Key is verified as the service does it; bearer tokens only in development mode."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.batch import BatchClient
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.transport import HttpRequest as TransportRequest
from azure.core.rest import HttpRequest

from shardrun.emulator import Emulator
from shardrun.emulator.auth import sign, string_to_sign

from .conftest import client_for, error_of, make_pool, start_emulator

OTHER_KEY = base64.b64encode(b"not the account key, 32 bytes!!!").decode()


def test_the_sdk_signature_is_accepted(emulator: Emulator) -> None:
    client = client_for(emulator)
    make_pool(client, nodes=0)
    assert [p.id for p in client.list_pools(filter="id eq 'pool1'")] == ["pool1"]


def test_our_canonical_string_matches_the_sdk_signature(emulator: Emulator) -> None:
    """Sign a request with the SDK's own policy and recompute the signature from what is sent."""
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential("acct", emulator.config.account_key))
    url = "http://127.0.0.1:1/jobs/j1/tasks?api-version=2025-06-01&maxresults=10&$filter=state%20eq%20%27active%27"
    request = TransportRequest(
        "POST",
        url,
        headers={
            "Content-Type": "application/json; odata=minimalmetadata",
            "Content-Length": "2",
            "ocp-date": "Mon, 02 Feb 2026 10:00:00 GMT",
            "If-Match": "0x1",
        },
    )
    policy.on_request(PipelineRequest(request, context=None))  # type: ignore[arg-type]
    sdk_signature = request.headers["Authorization"].split(":", 1)[1]
    path, _, query = url.split("//", 1)[1].partition("/")[2].partition("?")
    text = string_to_sign("POST", "/" + path, query, request.headers, "acct")
    assert sign(emulator.config.account_key, text) == sdk_signature


def test_wrong_key_is_forbidden(emulator: Emulator) -> None:
    error = error_of(lambda: list(client_for(emulator, key=OTHER_KEY, retry_total=0).list_pools()))
    assert error.status_code == 403 and error.error.code == "AuthenticationFailed"
    assert OTHER_KEY not in error.response.text()


def test_wrong_account_name_is_forbidden(emulator: Emulator) -> None:
    client = BatchClient(
        emulator.url, AzureNamedKeyCredential("someoneelse", emulator.config.account_key), retry_total=0
    )
    assert error_of(lambda: list(client.list_pools())).status_code == 403


def test_tampered_request_is_forbidden(emulator: Emulator) -> None:
    """A header that is part of the signature changes after signing."""

    def tamper(request: PipelineRequest[Any]) -> None:
        request.http_request.headers["ocp-date"] = "Mon, 02 Feb 2026 10:00:00 GMT"

    client = client_for(emulator, retry_total=0)
    error = error_of(lambda: list(client.list_pools(raw_request_hook=tamper)))
    assert error.status_code == 403 and error.error.code == "AuthenticationFailed"


def test_missing_authorization_is_unauthorized(emulator: Emulator) -> None:
    def strip(request: PipelineRequest[Any]) -> None:
        del request.http_request.headers["Authorization"]

    client = client_for(emulator, retry_total=0)
    error = error_of(lambda: list(client.list_pools(raw_request_hook=strip)))
    assert isinstance(error, ClientAuthenticationError)
    assert error.status_code == 401 and error.error.code == "AuthenticationFailed"


class AnyToken:
    """A TokenCredential like DefaultAzureCredential, handing out an opaque token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://batch.core.windows.net//.default",)
        return AccessToken("opaque-development-token", 4102444800)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, made here, for the emulator's HTTPS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_bearer_tokens_only_in_development_mode(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    strict = start_emulator(tls_cert=cert, tls_key=key)
    dev = start_emulator(tls_cert=cert, tls_key=key, allow_bearer=True)
    try:
        assert strict.url.startswith("https://")
        refused = BatchClient(strict.url, AnyToken(), retry_total=0, connection_verify=str(cert))  # type: ignore[arg-type]
        assert error_of(lambda: list(refused.list_pools())).status_code == 401
        client = BatchClient(dev.url, AnyToken(), retry_total=0, connection_verify=str(cert))  # type: ignore[arg-type]
        make_pool(client, nodes=0)
        assert client.get_pool("pool1").id == "pool1"
        # Shared Key still works, and is still checked, in development mode.
        assert client_for(dev, connection_verify=str(cert)).get_pool("pool1").id == "pool1"
        bad = client_for(dev, key=OTHER_KEY, retry_total=0, connection_verify=str(cert))
        assert error_of(lambda: bad.get_pool("pool1")).status_code == 403
    finally:
        strict.stop()
        dev.stop()


def test_configurable_account() -> None:
    key = base64.b64encode(b"a different account key for us!!").decode()
    emu = start_emulator(account_name="myaccount", account_key=key)
    try:
        client = BatchClient(emu.url, AzureNamedKeyCredential("myaccount", key), retry_total=0)
        assert list(client.list_pools()) == []
        response = client.send_request(HttpRequest("GET", "/pools?api-version=2025-06-01"))
        assert response.status_code == 200
    finally:
        emu.stop()
