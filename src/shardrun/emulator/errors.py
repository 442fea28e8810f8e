"""Batch errors as the service sends them: an HTTP status and a body of `code`, `message.value`, `values`.

Handlers raise `BatchApiError`; the server turns it into the response. Codes and statuses follow
"Batch Status and Error Codes" in the service documentation.
"""

from __future__ import annotations

from typing import Any

# The documented user message for each code we send.
MESSAGES: dict[str, str] = {
    "InvalidRequestBody": "The specified Request Body is not syntactically valid.",
    "MissingRequiredProperty": "A required property was not specified in the request body.",
    "InvalidPropertyValue": "The value provided for one of the properties in the request body is invalid.",
    "MissingRequiredQueryParameter": "A required query parameter was not specified for this request.",
    "UnsupportedQueryParameter": "One of the query parameters specified in the request URI is not supported.",
    "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is "
    "invalid.",
    "OutOfRangeQueryParameterValue": "A query parameter specified in the request URI is outside the "
    "permissible range.",
    "UnsupportedRequestVersion": "The specified request version is not supported.",
    "InvalidHeaderValue": "The value provided for one of the HTTP headers was not in the correct format.",
    "InvalidUri": "The requested URI does not represent any resource on the server.",
    "UnsupportedHttpVerb": "The resource doesn't support the specified HTTP verb.",
    "RequestBodyTooLarge": "The size of the request body exceeds the maximum size permitted.",
    "InvalidAuthenticationInfo": "The authentication information was not provided in the correct format.",
    "AuthenticationFailed": "Server failed to authenticate the request. Make sure the value of Authorization "
    "header is formed correctly including the signature.",
    "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
    "PoolNotFound": "The specified pool does not exist.",
    "JobNotFound": "The specified job does not exist.",
    "TaskNotFound": "The specified task does not exist.",
    "NodeNotFound": "The specified node does not exist.",
    "FileNotFound": "The specified file does not exist.",
    "PoolExists": "The specified pool already exists.",
    "JobExists": "The specified job already exists.",
    "TaskExists": "The specified task already exists.",
    "PoolBeingDeleted": "The specified pool has been marked for deletion and is being reclaimed.",
    "PoolBeingResized": "The specified pool is being resized.",
    "JobBeingDeleted": "The specified job has been marked for deletion and is being garbage collected.",
    "JobBeingTerminated": "The specified job is being terminated.",
    "JobCompleted": "The specified job is already in a completed state.",
    "TaskCompleted": "The specified task is already in a completed state.",
    "TaskIdSameAsJobPreparationTask": "The specified task has the same id as the job preparation task.",
    "JobPreparationTaskNotSpecified": "The specified job does not have a Job Preparation task.",
    "TaskDependenciesNotSpecifiedOnJob": "A task was specified as depending on other tasks, but the job did "
    "not specify that it would use task dependencies.",
    "TaskDependencyListTooLong": "The task dependency list is too long.",
    "OperationInvalidForCurrentState": "The specified operation is not valid for the current state of the "
    "resource.",
    "InvalidAutoScalingSettings": "The specified auto-scaling settings are not valid.",
    "AutoScalingFormulaSyntaxError": "The specified auto-scaling formula has a syntax error.",
    "TooManyEnableAutoScaleRequests": "Too many Enable Pool AutoScale requests are issued on the pool.",
    "TooManyRequests": "The server is receiving too many requests. Please retry your request.",
    "ServerBusy": "The server is currently unable to receive requests. Please retry your request.",
    "InternalError": "The server encountered an internal error. Please retry the request.",
    "NotImplementedByEmulator": "This operation is not implemented by the shardrun Batch emulator.",
}


class BatchApiError(Exception):
    """An error response. `values` are the Batch error detail pairs (key, value)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str | None = None,
        values: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message or MESSAGES.get(code, code)
        self.values = values or []
        self.headers = headers or {}
        super().__init__(f"{status} {code}: {self.message}")

    def body(self, request_id: str, time_text: str) -> dict[str, Any]:
        # The service appends the request id and time to every message.
        body: dict[str, Any] = {
            "code": self.code,
            "message": {
                "lang": "en-US",
                "value": f"{self.message}\nRequestId:{request_id}\nTime:{time_text}",
            },
        }
        if self.values:
            body["values"] = [{"key": k, "value": v} for k, v in self.values]
        return body


def not_found(kind: str, ident: str) -> BatchApiError:
    """404 for a missing pool, job, task, node or file."""
    return BatchApiError(404, f"{kind}NotFound", values=[("Reason", f"{kind} {ident!r} does not exist")])


def exists(kind: str) -> BatchApiError:
    return BatchApiError(409, f"{kind}Exists")


def bad_property(name: str, value: Any, reason: str) -> BatchApiError:
    return BatchApiError(
        400,
        "InvalidPropertyValue",
        values=[("PropertyName", name), ("PropertyValue", str(value)), ("Reason", reason)],
    )
