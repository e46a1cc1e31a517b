"""Optional bearer-token authentication, compared in constant time. Probes and /metrics stay open.

:class:`BearerAuthMiddleware` checks the header before anything reads or parses the body, on every
path (the API, unknown paths, ``/docs``, ``/redoc`` and ``/openapi.json``) except the probes, so
an unauthenticated client can cost neither a body read nor a parse. :func:`bearer_auth` is the
same check as a FastAPI dependency.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable

from fastapi import Request
from omoai_core.errors import UnauthorizedError
from starlette.types import ASGIApp, Receive, Scope, Send


def _valid(header: str, expected: bytes) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


def bearer_auth(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: a no-op without a token, else require ``Authorization: Bearer <token>``."""
    expected = token.encode() if token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        if not _valid(request.headers.get("authorization", ""), expected):
            raise UnauthorizedError("missing or invalid bearer token")

    return check


class BearerAuthMiddleware:
    """A pure ASGI middleware: 401 before the app runs unless the bearer token matches."""

    def __init__(self, app: ASGIApp, token: str, exempt: Iterable[str] = ()) -> None:
        self.app = app
        self.expected = token.encode()
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self.exempt or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if _valid(header, self.expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(UnauthorizedError("missing or invalid bearer token").to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
