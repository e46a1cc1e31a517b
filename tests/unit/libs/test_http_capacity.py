"""``GET /v1/capacity``: every service tells how many requests one replica works on at once (the
slots the operator's placement fills), without a token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from omoai_core.settings import ServerSettings
from omoai_http.app import PROBE_PATHS, install_common
from omoai_http.auth import bearer_auth
from prometheus_client import CollectorRegistry

TOKEN = "capacity-token-0123456789"


def test_capacity_is_the_replicas_max_concurrency_and_needs_no_token() -> None:
    settings = ServerSettings(max_concurrency=6, max_queue=20, api_token=TOKEN)
    app = FastAPI()
    install_common(app, settings, registry=CollectorRegistry(), ready=lambda: True)
    api = APIRouter(dependencies=[Depends(bearer_auth(settings.resolved_token()))])

    @api.get("/v1/secret")
    async def secret() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(api)
    with TestClient(app) as http:
        assert http.get("/v1/secret").status_code == 401  # the API is behind the token...
        r = http.get("/v1/capacity")  # ...the capacity is not
        assert r.status_code == 200
        assert r.json() == {"slots": 6, "max_queue": 20}
    assert "/v1/capacity" in PROBE_PATHS
