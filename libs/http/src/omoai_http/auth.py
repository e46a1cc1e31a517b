"""Optional bearer-token authentication, compared in constant time. Probes and /metrics stay open."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request
from omoai_core.errors import UnauthorizedError


def bearer_auth(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: a no-op without a token, else require ``Authorization: Bearer <token>``."""
    expected = token.encode() if token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise UnauthorizedError("missing or invalid bearer token")

    return check
