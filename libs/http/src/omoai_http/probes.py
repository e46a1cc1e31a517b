"""``/healthz`` (process alive), ``/readyz`` (model loaded and warmed up) and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from omoai_core.errors import error_body
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def probes_router(registry: CollectorRegistry, ready: Callable[[], bool]) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse(error_body("not_ready", "model not loaded yet", retryable=True), status_code=503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
