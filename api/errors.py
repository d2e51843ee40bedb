"""Every error leaves the service as JSON ``{"error": code, "detail": message}``.

Domain errors are raised as :class:`ApiError` (or a subclass) anywhere below the handlers and
turned into HTTP codes here, in one place. Validation errors name the offending field. An
unexpected exception is a 500 with a generic message: the traceback goes to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexes.persistence import IndexMismatchError

log = logging.getLogger("techmatch.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


class ApiError(Exception):
    """A domain error with its HTTP status, a stable code and a message for people."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field


class NotFound(ApiError):
    """A record named in the path or body does not exist."""

    def __init__(self, kind: str, record_id: str, field: str = "id") -> None:
        super().__init__(404, "not_found", f"{kind} '{record_id}' does not exist", field)


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The one error shape of the service."""
    return {"error": error, "detail": detail, **{k: v for k, v in extra.items() if v is not None}}


def _location(loc: tuple[Any, ...]) -> str:
    # ("body", "needs", 0, "title") -> "needs[0].title"; the "body" prefix says nothing.
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _describe(error: dict[str, Any]) -> str:
    where = _location(tuple(error.get("loc", ())))
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "json_invalid":
        return f"request body is not valid JSON ({error.get('ctx', {}).get('error', message)})"
    return f"{where}: {message}"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    fields = [
        {"field": _location(tuple(e.get("loc", ()))), "message": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in errors
    ]
    detail = "; ".join(_describe(e) for e in errors[:5]) or "invalid request"
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return JSONResponse(
        status_code=422,
        content=jsonable_encoder(error_body("validation_error", detail, field=fields[0]["field"]
                                            if fields else None, errors=fields)),
    )


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(status_code=exc.status, content=error_body(exc.error, exc.detail, field=exc.field))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(
        status_code=exc.status_code,
        content=error_body(_STATUS_CODES.get(exc.status_code, "http_error"), detail),
        headers=getattr(exc, "headers", None),
    )


async def _index_mismatch(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content=error_body("index_mismatch", str(exc)))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Log the traceback, never the headers (they may carry an API key).
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=500, content=error_body("internal_error", "unexpected server error; see the log")
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IndexMismatchError, _index_mismatch)
    app.add_exception_handler(Exception, _unexpected)
