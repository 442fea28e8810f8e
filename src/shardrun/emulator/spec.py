"""The official Batch REST spec (Swagger 2.0, api-version 2025-06-01), used to route, validate and shape.

BatchService.json beside this file is the unmodified spec from Azure/azure-rest-api-specs. Its
definitions become one JSON Schema (`#/definitions/` -> `#/$defs/`, `additionalProperties: false`
on every object), so a request body with an unknown property, a wrong type, a bad enum value or a
missing required property is rejected the way the service rejects it.

A body is first checked by fastjsonschema's compiled code (about 13x faster on a collection of 100
tasks); only a body it finds wrong goes through jsonschema, which names the error the way the
service does. So jsonschema has the last word, and tests check that the two agree.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

from .errors import BatchApiError

SPEC_FILE = Path(__file__).with_name("BatchService.json")
API_VERSION = "2025-06-01"

_DURATION = re.compile(
    r"^-?P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
    r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$"
)
_DURATION_PARTS = re.compile(r"(\d+(?:\.\d+)?)([YMWDHS])")
_SECONDS = {"Y": 365 * 86400.0, "W": 7 * 86400.0, "D": 86400.0, "H": 3600.0, "S": 1.0}
# Deserialisation problems: the service cannot read the body at all.
_SYNTAX_VALIDATORS = ("type", "additionalProperties", "enum", "format", "const")


def parse_duration(text: str) -> float:
    """ISO 8601 duration -> seconds (months count as 30 days, as the service's TimeSpan cannot hold them)."""
    if not _DURATION.match(text):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    date_part, _, time_part = text.lstrip("-").partition("T")
    total = 0.0
    for number, unit in _DURATION_PARTS.findall(date_part):
        total += float(number) * (30 * 86400.0 if unit == "M" else _SECONDS[unit])
    for number, unit in _DURATION_PARTS.findall(time_part):
        total += float(number) * (60.0 if unit == "M" else _SECONDS[unit])
    return -total if text.startswith("-") else total


_INTEGER_BOUNDS = {"int32": 2**31, "int64": 2**63}  # a format's values lie in [-bound, bound)


def _is_int32(value: object) -> bool:
    bound = _INTEGER_BOUNDS["int32"]
    return not isinstance(value, int) or -bound <= value < bound


def _is_int64(value: object) -> bool:
    if isinstance(value, str):  # contentLength is a string holding an int64
        return re.fullmatch(r"-?\d+", value) is not None
    bound = _INTEGER_BOUNDS["int64"]
    return not isinstance(value, int) or -bound <= value < bound


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in value


def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or _DURATION.match(value) is not None


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


# The formats the emulator checks; the spec's others (float, password, arm-id) are not checked.
_FORMATS = {"int32": _is_int32, "int64": _is_int64, "date-time": _is_date_time,
            "duration": _is_duration, "uri": _is_uri}


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, check in _FORMATS.items():
        checker.checks(name)(check)
    return checker


def _for_fastjsonschema(schema: Any) -> Any:
    """The same schema in the form fastjsonschema checks alike: it applies formats to strings only,
    so integer formats become bounds, and formats the emulator does not check are dropped."""
    if isinstance(schema, list):
        return [_for_fastjsonschema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _for_fastjsonschema(v) for k, v in schema.items()}
    fmt = out.get("format")
    if fmt is not None and fmt not in _FORMATS:
        del out["format"]
    elif out.get("type") == "integer" and fmt in _INTEGER_BOUNDS:
        del out["format"]
        out["minimum"], out["maximum"] = -_INTEGER_BOUNDS[fmt], _INTEGER_BOUNDS[fmt] - 1
    return out


def _closed(schema: Any) -> Any:
    """Rewrite refs for JSON Schema and forbid unknown properties on every object definition."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if isinstance(out.get("$ref"), str):
            out["$ref"] = out["$ref"].replace("#/definitions/", "#/$defs/")
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        server = out.get("properties", {}).get("registryServer")
        if isinstance(server, dict):
            # Marked 'uri', but the service takes a bare host: its own default is "docker.io",
            # and Azure's examples use "myacr.azurecr.io".
            server.pop("format", None)
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    query: dict[str, dict[str, Any]]  # lower-case name -> parameter
    body_definition: str | None
    body_required: bool
    responses: dict[int, str | None] = field(default_factory=dict)  # status -> definition
    pageable: bool = False


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{regex}/?$")


class BatchSpec:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.definitions: dict[str, Any] = raw["definitions"]
        self._root = {"$defs": _closed(self.definitions)}
        self._checker = _format_checker()
        self._validators: dict[str, Draft202012Validator] = {}
        self._fast_root = _for_fastjsonschema(self._root)
        self._quick_checks: dict[str, Any] = {}
        self.operations: list[Operation] = []
        shared = raw.get("parameters", {})
        for template, item in raw["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                params = [shared[p["$ref"].split("/")[-1]] if "$ref" in p else p for p in op["parameters"]]
                body = next((p for p in params if p.get("in") == "body"), None)
                responses = {
                    int(code): (r.get("schema", {}).get("$ref", "").split("/")[-1] or None)
                    for code, r in op["responses"].items()
                    if code != "default"
                }
                self.operations.append(
                    Operation(
                        operation_id=op["operationId"],
                        method=method.upper(),
                        template=template,
                        pattern=_compile(template),
                        query={p["name"].lower(): p for p in params if p.get("in") == "query"},
                        body_definition=body["schema"]["$ref"].split("/")[-1] if body else None,
                        body_required=bool(body and body.get("required")),
                        responses=responses,
                        pageable="x-ms-pageable" in op,
                    )
                )

    # -- routing ---------------------------------------------------------------------------------

    def match(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]]:
        """Find the operation for a request path (still percent-encoded); 404/405 like the service."""
        path_known = False
        for op in self.operations:
            m = op.pattern.match(raw_path)
            if not m:
                continue
            path_known = True
            if op.method == method:
                return op, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        if path_known:
            raise BatchApiError(405, "UnsupportedHttpVerb", values=[("HttpVerb", method)])
        raise BatchApiError(400, "InvalidUri", values=[("Reason", f"no operation at {raw_path}")])

    # -- query parameters ------------------------------------------------------------------------

    def parse_query(self, op: Operation, query: dict[str, list[str]]) -> dict[str, Any]:
        """Check and convert the query string of a request against the operation's parameters."""
        out: dict[str, Any] = {}
        for name, values in query.items():
            key = name.lower()
            if key == "$skiptoken" and op.pageable:
                out[key] = values[0]
                continue
            param = op.query.get(key)
            if param is None:
                raise BatchApiError(400, "UnsupportedQueryParameter", values=[("QueryParameterName", name)])
            out[key] = self._convert_query(name, values[0], param)
        version = out.get("api-version")
        if version is None:
            raise BatchApiError(
                400, "MissingRequiredQueryParameter", values=[("QueryParameterName", "api-version")]
            )
        if version != API_VERSION:
            raise BatchApiError(
                400,
                "UnsupportedRequestVersion",
                values=[("QueryParameterName", "api-version"), ("QueryParameterValue", version)],
            )
        return out

    @staticmethod
    def _convert_query(name: str, text: str, param: dict[str, Any]) -> Any:
        def invalid(reason: str) -> BatchApiError:
            return BatchApiError(
                400,
                "InvalidQueryParameterValue",
                values=[("QueryParameterName", name), ("QueryParameterValue", text), ("Reason", reason)],
            )

        kind = param.get("type")
        if kind == "integer":
            try:
                number = int(text)
            except ValueError:
                raise invalid("not an integer") from None
            if ("minimum" in param and number < param["minimum"]) or (
                "maximum" in param and number > param["maximum"]
            ):
                raise BatchApiError(
                    400,
                    "OutOfRangeQueryParameterValue",
                    values=[("QueryParameterName", name), ("QueryParameterValue", text)],
                )
            return number
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise invalid("not a boolean")
            return text.lower() == "true"
        if kind == "array":
            return [part.strip() for part in text.split(",") if part.strip()]
        return text

    # -- bodies ----------------------------------------------------------------------------------

    def validator(self, definition: str) -> Draft202012Validator:
        if definition not in self._validators:
            schema = {"$ref": f"#/$defs/{definition}", **self._root}
            self._validators[definition] = Draft202012Validator(schema, format_checker=self._checker)
        return self._validators[definition]

    def quick_check(self, definition: str) -> Any:
        """Compiled code that raises fastjsonschema.JsonSchemaException when a body is wrong."""
        if definition not in self._quick_checks:
            schema = {"$ref": f"#/$defs/{definition}", **self._fast_root}
            self._quick_checks[definition] = fastjsonschema.compile(
                schema, formats=_FORMATS, use_default=False  # never fill defaults into the body
            )
        return self._quick_checks[definition]

    def validate_body(self, definition: str, body: Any) -> None:
        """Raise the service's 400 for the first problem in `body` against `definition`."""
        try:
            self.quick_check(definition)(body)
            return
        except fastjsonschema.JsonSchemaException:
            pass  # find and name the problem the way the service does
        errors = list(self.validator(definition).iter_errors(body))
        if not errors:
            return

        def rank(error: jsonschema.ValidationError) -> int:
            if error.validator in _SYNTAX_VALIDATORS:
                return 0
            return 1 if error.validator == "required" else 2

        error = min(errors, key=lambda e: (rank(e), len(e.absolute_path)))
        where = _path_text("", error.absolute_path)
        if error.validator == "required":
            missing = next(p for p in error.validator_value if p not in error.instance)
            raise BatchApiError(
                400, "MissingRequiredProperty", values=[("PropertyName", f"{where}.{missing}".lstrip("."))]
            )
        if error.validator == "additionalProperties":
            allowed = error.schema.get("properties", {})
            unknown = sorted(set(error.instance) - set(allowed))
            raise BatchApiError(
                400,
                "InvalidRequestBody",
                values=[
                    ("Reason", f"The property '{unknown[0]}' does not exist on '{where or definition}'.")
                ],
            )
        if error.validator in _SYNTAX_VALIDATORS:
            raise BatchApiError(
                400, "InvalidRequestBody", values=[("PropertyName", where), ("Reason", error.message)]
            )
        raise BatchApiError(
            400,
            "InvalidPropertyValue",
            values=[
                ("PropertyName", where),
                ("PropertyValue", json.dumps(error.instance)),
                ("Reason", error.message),
            ],
        )

    def response_problems(self, definition: str, body: Any, *, selected: bool = False) -> list[str]:
        """Where a response body departs from its definition (used by the emulator's self-check).
        With `selected` ($select was used) required properties may be missing."""
        return [
            f"{_path_text(definition, e.absolute_path)}: {e.message}"
            for e in self.validator(definition).iter_errors(body)
            if not (selected and e.validator == "required")
        ]

    # -- shaping ---------------------------------------------------------------------------------

    def properties(self, definition: str) -> dict[str, Any]:
        props: dict[str, Any] = self.definitions[definition].get("properties", {})
        return props

    def select(self, definition: str, item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        """Apply an OData $select: only the named top-level properties (unknown names are a 400)."""
        if not fields:
            return item
        self.check_select(definition, fields)
        return {k: v for k, v in item.items() if k in fields}

    def check_select(self, definition: str, fields: list[str] | None) -> None:
        known = self.properties(definition)
        for name in fields or []:
            if name not in known:
                raise BatchApiError(
                    400,
                    "InvalidQueryParameterValue",
                    values=[
                        ("QueryParameterName", "$select"),
                        ("QueryParameterValue", ",".join(fields or [])),
                        ("Reason", f"{name} is not a property of {definition}"),
                    ],
                )


def _path_text(root: str, path: Any) -> str:
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


@cache
def load_spec() -> BatchSpec:
    return BatchSpec(json.loads(SPEC_FILE.read_text(encoding="utf-8")))
