"""What every OMOAI service app installs the same way: the error handlers, the open probes and
``/metrics``, the request-body limit, and CORS only when origins are configured.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from omoai_core.settings import ServerSettings
from prometheus_client import CollectorRegistry

from omoai_http.errors import install_error_handlers
from omoai_http.limits import BodyLimitMiddleware
from omoai_http.probes import probes_router

#: Paths that are never authenticated nor body-limited.
PROBE_PATHS = ("/healthz", "/readyz", "/metrics")


def install_common(
    app: FastAPI, settings: ServerSettings, *, registry: CollectorRegistry, ready: Callable[[], bool]
) -> None:
    """Install the shared pieces; the service then adds its own (authenticated) routers."""
    install_error_handlers(app)
    app.include_router(probes_router(registry, ready))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes, exempt=PROBE_PATHS)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
