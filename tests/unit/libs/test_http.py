"""Shared HTTP plumbing: one error shape, constant-time bearer auth, body limits, bounded admission."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from omoai_core.errors import AudioTooLongError, OverloadedError
from omoai_http.admission import Admission
from omoai_http.auth import bearer_auth
from omoai_http.errors import install_error_handlers
from omoai_http.limits import BodyLimitMiddleware
from omoai_http.probes import probes_router
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

TOKEN = "s3cret-token-0123456789"


class Body(BaseModel):
    n: int


def _app(token: str | None = None, max_bytes: int = 1024) -> FastAPI:
    registry = CollectorRegistry()
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    app.include_router(probes_router(registry, ready=lambda: True))
    auth = Depends(bearer_auth(token))

    @app.post("/echo", dependencies=[auth])
    async def echo(body: Body) -> dict:
        return {"n": body.n}

    @app.post("/raw", dependencies=[auth])
    async def raw(request: Request) -> dict:
        return {"len": len(await request.body())}

    @app.get("/too-long")
    async def too_long() -> None:
        raise AudioTooLongError("the audio is 99 s long; the limit is 10 s")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


def _shape(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "retryable", "details"}
    return body["error"]


def test_omoai_errors_keep_their_status_and_code():
    resp = TestClient(_app()).get("/too-long")
    assert resp.status_code == 422
    assert _shape(resp)["code"] == "audio_too_long"


def test_validation_errors_are_400_with_the_field_named():
    resp = TestClient(_app()).post("/echo", json={"n": "many"})
    assert resp.status_code == 400
    err = _shape(resp)
    assert err["code"] == "invalid_input" and "n:" in err["message"]


def test_unknown_route_and_unexpected_errors_share_the_shape_without_leaking():
    client = TestClient(_app(), raise_server_exceptions=False)
    assert _shape(client.get("/nope"))["code"] == "not_found"
    resp = client.get("/boom")
    assert resp.status_code == 500
    assert "secret internals" not in resp.text
    assert _shape(resp)["code"] == "internal_error"
    assert _shape(resp)["retryable"] is False  # a bug meets the same request again: no retry


def test_bearer_token_required_when_configured_but_probes_stay_open():
    client = TestClient(_app(token=TOKEN))
    assert client.post("/echo", json={"n": 1}).status_code == 401
    assert client.post("/echo", json={"n": 1}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    resp = client.post("/echo", json={"n": 1}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_body_over_the_limit_is_413_by_header_and_while_streaming():
    client = TestClient(_app(max_bytes=100))
    resp = client.post("/raw", content=b"x" * 101)
    assert resp.status_code == 413 and _shape(resp)["code"] == "payload_too_large"

    def chunks():
        for _ in range(10):
            yield b"y" * 50

    resp = client.post("/raw", content=chunks())  # chunked: no Content-Length
    assert resp.status_code == 413
    assert client.post("/raw", content=b"z" * 100).json() == {"len": 100}


async def test_admission_refuses_beyond_the_queue_and_recovers():
    registry = CollectorRegistry()
    adm = Admission(max_concurrency=1, max_queue=1, registry=registry, service="test")
    release = asyncio.Event()

    async def work():
        async with adm.slot():
            await release.wait()

    running = asyncio.create_task(work())
    await asyncio.sleep(0)
    queued = asyncio.create_task(work())
    await asyncio.sleep(0)
    assert adm.waiting == 1
    with pytest.raises(OverloadedError) as err:
        async with adm.slot(retry_after_s=3):
            pass
    assert err.value.retry_after_s == 3
    release.set()
    await asyncio.gather(running, queued)
    async with adm.slot():
        assert registry.get_sample_value("omoai_test_requests_in_flight") == 1
    assert registry.get_sample_value("omoai_test_queue_depth") == 0


def test_validate_names_every_bad_field_and_unknown_fields_the_same_way_in_both_services():
    from omoai_core.errors import InvalidInputError
    from omoai_http.validation import validate
    from pydantic import BaseModel, ConfigDict

    class Inner(BaseModel):
        n: int

    class Req(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inner: Inner
        text: str

    with pytest.raises(InvalidInputError) as e:
        validate(Req, {"inner": {"n": "x"}, "colour": "blue"})
    assert e.value.details["errors"] == [
        "inner.n: Input should be a valid integer, unable to parse string as an integer",
        "text: Field required",
        "colour: unknown field",
    ]
    assert validate(Req, {"inner": {"n": 1}, "text": "t"}).inner.n == 1
