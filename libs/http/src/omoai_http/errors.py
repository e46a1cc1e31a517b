"""Exception handlers, registered in one place, that give every failure the same JSON shape:
``{"error": {"code", "message", "retryable", "details"}}``. Bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from omoai_core.errors import OmoaiError, OverloadedError, error_body
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from omoai_http.validation import invalid_request

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media",
    422: "invalid_input",
    429: "overloaded",
}


def error_response(exc: OmoaiError) -> JSONResponse:
    headers = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OmoaiError)
    async def _omoai(_: Request, exc: OmoaiError) -> JSONResponse:
        if exc.http_status == 499:
            log.debug("client left before its answer: %s", exc.message)
        elif exc.http_status >= 500:
            log.warning("request failed: %s (%s)", exc.code, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid_request(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail), retryable=exc.status_code in (429, 503)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # Nobody receives this answer; a client that left is not a server error worth a traceback.
        log.debug("client disconnected while sending its request")
        return JSONResponse(error_body("client_closed_request", "the client closed the connection"), status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Not retryable: an error nobody foresaw is most likely a bug that the same request meets
        # again (re-transcribing hours of audio backoffLimit times); what may pass is raised as a
        # retryable OmoaiError (UnavailableError, OverloadedError, UpstreamError, ...).
        log.exception("unexpected error")
        return JSONResponse(
            error_body("internal_error", "internal error (see the server log)", retryable=False),
            status_code=500,
        )
