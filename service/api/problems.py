"""Every error leaves the service as one RFC 9457 problem document with a stable code."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from service.domain.codes import ErrorCode
from service.errors import TidingsError, Unavailable

log = logging.getLogger("tidings.api")

PROBLEM_JSON = "application/problem+json"

_STATUS_CODES = {
    400: (ErrorCode.INVALID_REQUEST, "Invalid request"),
    401: (ErrorCode.UNAUTHORIZED, "Unauthorized"),
    403: (ErrorCode.FORBIDDEN, "Forbidden"),
    404: (ErrorCode.NOT_FOUND, "Not found"),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed"),
    413: (ErrorCode.PAYLOAD_TOO_LARGE, "Payload too large"),
    429: (ErrorCode.RATE_LIMITED, "Too many requests"),
    503: (ErrorCode.UNAVAILABLE, "Service unavailable"),
}
_HEADER_FIELDS = {"idempotency_key": "Idempotency-Key"}
"""Header parameters, by their Python name, as the client wrote them."""
_MSGSPEC_PATH = re.compile(r"at `\$\.?([^`]*)`")
_NAMED_FIELD = re.compile(r"(?:missing required field|unknown field) `([^`]*)`")


_MEANINGS = {
    400: "Invalid input: `invalid_request` or `invalid_cursor`, with `field` naming the culprit.",
    401: "`unauthorized`: credentials missing, malformed, expired or wrong.",
    404: "`not_found`: no such resource for this app.",
    409: "`idempotency_conflict` or `not_cancellable`.",
    410: "`cursor_reset`: the inbox was erased since the cursor was issued; restart without one.",
    413: "`payload_too_large`: the body is over `TIDINGS_MAX_BODY_BYTES`.",
    503: "`unavailable`: a dependency did not answer; retry after `Retry-After`.",
}


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem documents a route can answer (they replace Litestar's
    default 400 schema, which is not what the service sends)."""
    from service.api.schemas import Problem  # the schemas module is the API's, not the errors'

    return {
        status: ResponseSpec(
            data_container=Problem, description=_MEANINGS[status], media_type=PROBLEM_JSON, generate_examples=False
        )
        for status in statuses
    }


def problem(
    status: int, code: str, title: str, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """Build a problem response."""
    body: dict[str, Any] = {
        "type": f"https://tidings.dev/errors/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if field:
        body["field"] = field
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_of(message: str, key: str | None) -> str | None:
    """The offending field's path, from msgspec's message and Litestar's key.

    Litestar reports a body error's location as ``key`` (``recipients.users[0]``), and
    ``data`` (the handler's body parameter) for the body's top level.
    """
    match = _MSGSPEC_PATH.search(message)
    path = match.group(1) if match else (key or "")
    if path == "data" and _NAMED_FIELD.search(message):
        path = ""  # a top-level field is missing or unknown
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def validation_field(message: str) -> tuple[str | None, str]:
    """(field path, message without its location) of a msgspec validation error."""
    match = _MSGSPEC_PATH.search(message)
    path = match.group(1) if match else ""
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None, _MSGSPEC_PATH.sub("", message).rstrip(" -") or message


def handle_tidings_error(_: Request[Any, Any, Any], exc: TidingsError) -> Response[dict[str, Any]]:
    """Our own errors."""
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Unavailable) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(exc.status, exc.code, exc.title, exc.detail, field=exc.field, headers=headers)


def _body_fields(request: Request[Any, Any, Any]) -> tuple[str, ...]:
    """The fields of the route's body struct (empty when it has none)."""
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    return tuple(getattr(parameter.annotation, "__struct_fields__", ())) if parameter is not None else ()


def handle_validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's input validation (body decoding, query and header parameters)."""
    field: str | None = None
    detail = exc.detail or "invalid request"
    extra = exc.extra
    if isinstance(extra, list) and extra:
        first = extra[0]
        if isinstance(first, dict):
            message = str(first.get("message", detail))
            key = first.get("key")
            field = _field_of(message, str(key) if key else None)
            detail = _MSGSPEC_PATH.sub("", message).rstrip(" -") or detail
    elif isinstance(extra, dict) and extra:
        key, message = next(iter(extra.items()))
        field, detail = str(key), str(message)
    if field is None:
        field = _field_of(detail, None)
        detail = _MSGSPEC_PATH.sub("", detail).rstrip(" -")
    if field == "data" and detail.strip("'\"") == "data":
        # Litestar's name for the body, in a KeyError: there was no body at all, not a bad field.
        field, detail = None, "the request needs a JSON object body"
    elif field == "data" and "data" not in _body_fields(request):
        field = None  # Litestar names the body itself "data": the body is not an object
    
    return problem(400, ErrorCode.INVALID_REQUEST, "Invalid request", detail, field=_HEADER_FIELDS.get(field, field))


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Framework errors (404 route, 405, 413 body size...) in the same shape."""
    status = exc.status_code
    code, title = _STATUS_CODES.get(status, (ErrorCode.INVALID_REQUEST if status < 500 else ErrorCode.INTERNAL, "Error"))
    if status >= 500:
        log.error("server error: %s", exc.detail)
    detail = exc.detail if status < 500 else "internal error"
    headers = dict(exc.headers or {})
    return problem(status, code, title, str(detail), headers=headers or None)


def handle_recursion(_: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, Any]]:
    """Only a body nested beyond what the JSON decoder can follow reaches this far."""
    log.warning("request body nested too deeply: %s", exc)
    return problem(400, ErrorCode.INVALID_REQUEST, "Invalid request", "JSON nests too deeply", field="data")


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A bug: log it whole, answer 500 without internals."""
    log.exception("unhandled error", exc_info=exc)
    return problem(500, ErrorCode.INTERNAL, "Internal error", "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    TidingsError: handle_tidings_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_exception,
    RecursionError: handle_recursion,
    Exception: handle_unexpected,
}
