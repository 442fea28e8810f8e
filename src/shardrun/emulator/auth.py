"""Request authentication: Batch Shared Key, verified as the service verifies it, and an explicit
development mode that accepts any bearer token (so TokenCredential code paths can be exercised).

Shared Key is HMAC-SHA256, keyed with the base64-decoded account key, over:

    VERB \\n Content-Encoding \\n Content-Language \\n Content-Length \\n Content-MD5 \\n
    Content-Type \\n Date \\n If-Modified-Since \\n If-Match \\n If-None-Match \\n
    If-Unmodified-Since \\n Range \\n
    ocp-* headers, lower-cased and sorted, one "name:value\\n" each
    /<account><path>  then "\\n<name>:<value>" for each query parameter, sorted by name

Content-Length is "0" when a request other than GET or HEAD has no such header. The header value
and the signature are never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .errors import BatchApiError

SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
MAX_CLOCK_SKEW_SECONDS = 15 * 60


@dataclass(frozen=True)
class Credentials:
    account_name: str
    account_key: str  # base64, as the portal shows it
    allow_bearer: bool = False  # development mode: any bearer token is accepted


def string_to_sign(
    method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], account: str
) -> str:
    present = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD"):
        present.setdefault("content-length", "0")
    text = method + "\n" + "\n".join(present.get(name, "") for name in SIGNED_HEADERS) + "\n"
    for name, value in sorted((k.lower(), v) for k, v in headers.items() if "ocp-" in k.lower() and v):
        text += f"{name}:{value}\n"
    text += f"/{account}{raw_path}"
    query = urllib.parse.parse_qs(raw_query)
    for name in sorted(query):
        if query[name][0]:
            text += f"\n{name}:{query[name][0]}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _failed(status: int, detail: str) -> BatchApiError:
    code = "AuthenticationFailed" if status in (401, 403) else "InvalidAuthenticationInfo"
    return BatchApiError(status, code, values=[("AuthenticationErrorDetail", detail)])


def verify(
    creds: Credentials, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]
) -> None:
    """Raise 401/403 unless the request is signed with the account key (or is a dev-mode bearer call)."""
    authorization = headers.get("Authorization")
    if not authorization:
        raise _failed(401, "The request is not authenticated: the Authorization header is missing.")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        if creds.allow_bearer and value.strip():
            return
        raise _failed(401, "Bearer tokens are accepted only when the emulator runs in development mode.")
    if scheme != "SharedKey" or ":" not in value:
        raise _failed(400, "The Authorization header is not 'SharedKey <account>:<signature>'.")
    account, _, signature = value.strip().rpartition(":")
    if account != creds.account_name:
        raise _failed(403, "The account name in the Authorization header does not match this account.")
    _check_date(headers)
    expected = sign(creds.account_key, string_to_sign(method, raw_path, raw_query, headers, account))
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise _failed(403, "The signature is not valid base64.") from None
    if not hmac.compare_digest(given, base64.b64decode(expected)):
        raise _failed(
            403, "The MAC signature found in the HTTP request is not the same as any computed signature."
        )


def _check_date(headers: Mapping[str, str]) -> None:
    text = headers.get("ocp-date") or headers.get("Date")
    if not text:
        raise _failed(403, "The request has neither an ocp-date nor a Date header.")
    try:
        sent = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise _failed(403, "The request date header is not an RFC 1123 date.") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - sent).total_seconds()) > MAX_CLOCK_SKEW_SECONDS:
        raise _failed(403, "The request date is more than 15 minutes away from the server's time.")
