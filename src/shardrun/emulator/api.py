"""What the operation handlers share: the request and response types, the handler registry,
conditional headers, and listing with `$filter`, `$select`, `maxresults` and `odata.nextLink`.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from .errors import BatchApiError, bad_property
from .odata import compile_filter
from .spec import API_VERSION, Operation
from .state import Resource, parse_iso, wire

if TYPE_CHECKING:
    from .server import Emulator


@dataclass
class Request:
    op: Operation
    method: str
    path: str  # as sent, still percent-encoded
    params: dict[str, str]  # path parameters, decoded
    query: dict[str, Any]  # lower-case names, converted
    headers: Mapping[str, str]
    body: Any
    base_url: str  # scheme://host:port the client used
    request_id: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Response:
    status: int
    body: Any = None  # a dict is sent as JSON, bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    resource: Resource | None = None  # its ETag and Last-Modified become headers
    data_service_id: str | None = None


Handler = Callable[["Emulator", Request], Response]
HANDLERS: dict[str, Handler] = {}


def handles(operation_id: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        HANDLERS[operation_id] = func
        return func

    return register


def check_conditions(req: Request, resource: Resource, *, write: bool) -> None:
    """If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, as the service applies them."""
    etag = resource.get("eTag", "")
    modified = (
        parse_iso(resource["lastModified"]).replace(microsecond=0) if "lastModified" in resource else None
    )
    failed = 412 if write else 304
    if_match = req.header("If-Match")
    if if_match is not None and if_match != "*" and if_match.strip('"') != etag:
        raise BatchApiError(412, "ConditionNotMet")
    if_none = req.header("If-None-Match")
    if if_none is not None and (if_none == "*" or if_none.strip('"') == etag):
        raise BatchApiError(failed, "ConditionNotMet")
    since = _header_time(req, "If-Modified-Since")
    if since is not None and modified is not None and modified <= since:
        raise BatchApiError(failed, "ConditionNotMet")
    unmodified = _header_time(req, "If-Unmodified-Since")
    if unmodified is not None and modified is not None and modified > unmodified:
        raise BatchApiError(412, "ConditionNotMet")


def _header_time(req: Request, name: str) -> Any:
    text = req.header(name)
    if text is None:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise BatchApiError(400, "InvalidHeaderValue", values=[("HeaderName", name)]) from None


def _encode_token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise BatchApiError(
            400,
            "InvalidQueryParameterValue",
            values=[("QueryParameterName", "$skiptoken"), ("QueryParameterValue", token)],
        ) from None
    return data


# Where a list goes on: gives (position, resource) in list order, after `after` (a position from a
# previous page, or None), for the filter text (which it may use to start from an index).
Source = Callable[[str | None, Any], Iterator[tuple[Any, Resource]]]


def list_page(
    emu: Emulator, req: Request, definition: str, items: Iterable[tuple[str, Resource]]
) -> Response:
    """A page of a small list, by key order."""
    ordered = sorted(items, key=lambda pair: pair[0])

    def source(_: str | None, after: Any) -> Iterator[tuple[Any, Resource]]:
        return iter([pair for pair in ordered if after is None or pair[0] > after])

    return list_from(emu, req, definition, source)


def list_from(emu: Emulator, req: Request, definition: str, source: Source) -> Response:
    """One page of a list: filter, select, page. The query rides inside the skip token, so a next
    link is one short opaque URL whatever the client puts in it. Only the page's items are copied
    to wire format; the filter reads the stored resources (odata hides bookkeeping and secrets)."""
    token = req.query.get("$skiptoken")
    if token is not None:
        saved = _decode_token(token)
        filter_text, select, limit, after = saved["f"], saved["s"], saved["m"], saved["a"]
    else:
        filter_text = req.query.get("$filter")
        select = req.query.get("$select")
        limit = int(req.query.get("maxresults", 1000))
        after = None
    predicate = compile_filter(filter_text)
    emu.spec.check_select(definition, select)
    page: list[Resource] = []
    last: Any = None
    more = False
    for position, resource in source(filter_text, after):
        if not predicate(resource):
            continue
        if len(page) == limit:
            more = True
            break
        page.append(emu.spec.select(definition, wire(resource), select))
        last = position
    body: dict[str, Any] = {"value": page}
    if more:
        next_token = _encode_token({"f": filter_text, "s": select, "m": limit, "a": last})
        query = urllib.parse.urlencode({"api-version": API_VERSION, "$skiptoken": next_token})
        body["odata.nextLink"] = f"{req.base_url}{req.path.split('?')[0]}?{query}"
    return Response(200, body)


def get_one(emu: Emulator, req: Request, definition: str, resource: Resource) -> Response:
    check_conditions(req, resource, write=False)
    body = emu.spec.select(definition, wire(resource), req.query.get("$select"))
    return Response(200, body, resource=resource)


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_id(name: str, value: str) -> None:
    """Pool, job and task IDs: letters, digits, hyphens and underscores, at most 64 of them."""
    if not _ID.match(value):
        raise bad_property(name, value, "an ID holds 1 to 64 letters, digits, hyphens or underscores")


def resource_url(req: Request, *parts: str) -> str:
    return req.base_url + "".join("/" + urllib.parse.quote(p, safe="") for p in parts)
