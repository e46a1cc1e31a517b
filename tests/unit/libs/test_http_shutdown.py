"""omoai_http.shutdown: the drain's decisions (the end-to-end behaviour is tested against a real
ASR process in tests/integration/asr_service/test_asr_service_shutdown.py)."""

from __future__ import annotations

import asyncio
import json
import signal

import uvicorn
from omoai_http.shutdown import Drain, DrainingServer


async def _app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(drain: Drain, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(drain({"type": "http", "path": path}, receive, send))
    return sent[0]["status"], dict(sent[0].get("headers", [])), sent[1]["body"]


def test_draining_refuses_work_and_readiness_but_keeps_health_and_metrics():
    drain = Drain(_app)
    assert _call(drain, "/v1/transcriptions")[0] == 200
    drain.draining = True
    status, headers, body = _call(drain, "/v1/transcriptions")
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert json.loads(body)["error"] == {
        "code": "shutting_down",
        "message": "this replica is shutting down; retry on another",
        "retryable": True,
        "details": {},
    }
    assert _call(drain, "/readyz")[0] == 503
    assert _call(drain, "/healthz")[0] == 200 and _call(drain, "/metrics")[0] == 200
    assert drain.in_flight == 0


def _server(timeout_s: float) -> DrainingServer:
    drain = Drain(_app)
    return DrainingServer(uvicorn.Config(drain, host="127.0.0.1", port=1), drain, timeout_s)


def test_the_first_signal_drains_and_the_server_stops_once_nothing_is_in_flight():
    server = _server(60)
    server.drain.in_flight = 1
    server.handle_exit(signal.SIGTERM, None)
    assert server.drain.draining and not server.should_exit
    asyncio.run(server.on_tick(1))
    assert not server.should_exit, "a request is still running"
    server.drain.in_flight = 0
    asyncio.run(server.on_tick(2))
    assert server.should_exit


def test_the_shutdown_timeout_stops_a_drain_that_does_not_finish():
    server = _server(0.0)
    server.drain.in_flight = 3
    server.handle_exit(signal.SIGTERM, None)
    asyncio.run(server.on_tick(1))
    assert server.should_exit


def test_a_second_interrupt_forces_the_exit():
    server = _server(60)
    server.drain.in_flight = 1
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit
