"""What every OMOAI service app installs the same way: the error handlers, the open probes and
``/metrics``, ``/v1/capacity`` (the slots this replica offers, which the operator's placement
reads), bearer authentication in front of everything else, the request-body limit, and CORS only
when origins are configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from omoai_core.settings import ServerSettings
from prometheus_client import CollectorRegistry

from omoai_http.auth import BearerAuthMiddleware
from omoai_http.errors import install_error_handlers
from omoai_http.limits import BodyLimitMiddleware
from omoai_http.probes import probes_router

#: Paths that are never authenticated nor body-limited.
PROBE_PATHS = ("/healthz", "/readyz", "/metrics", "/v1/capacity")


def capacity_router(settings: ServerSettings, slots_taken: Callable[[], int] | None = None) -> APIRouter:
    """``GET /v1/capacity``: ``slots`` is how many requests this replica works on at once (its
    ``max_concurrency``), so a client spreading work over replicas never queues inside one. Work that
    bypasses the caller's queue (the ASR service's live sessions) takes ``slots_taken()`` of them."""
    router = APIRouter()

    @router.get("/v1/capacity", include_in_schema=False)
    async def capacity() -> dict[str, int]:
        taken = slots_taken() if slots_taken is not None else 0
        return {"slots": max(0, settings.max_concurrency - taken), "max_queue": settings.max_queue}

    return router


def docs_options(settings: ServerSettings) -> dict[str, Any]:
    """FastAPI's docs arguments: on (and then behind the token, if any) or off with ``api_docs=false``."""
    if settings.api_docs:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def install_common(
    app: FastAPI,
    settings: ServerSettings,
    *,
    registry: CollectorRegistry,
    ready: Callable[[], bool],
    token: str | None = None,
    slots_taken: Callable[[], int] | None = None,
) -> None:
    """Install the shared pieces; the service then adds its own routers.

    With ``token``, every path but the probes needs it, checked before any body is read (WebSocket
    routes check it themselves: the middleware sees HTTP only).
    """
    install_error_handlers(app)
    app.include_router(probes_router(registry, ready))
    app.include_router(capacity_router(settings, slots_taken))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes, exempt=PROBE_PATHS)
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token, exempt=PROBE_PATHS)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
