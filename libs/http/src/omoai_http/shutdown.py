"""Graceful shutdown of a service: on SIGTERM, drain before stopping.

Kubernetes sends SIGTERM after the pod's preStop hook, while some clients may still hold the old
endpoints. Plain uvicorn would close its listening socket at once (new connections refused, with
no hint to retry) and give in-flight requests a fixed 30 s. Here the first SIGTERM (or SIGINT)
starts a drain instead:

- requests already running carry on to the end, for up to ``shutdown_timeout_s``;
- new requests get ``503`` with ``Retry-After`` and the usual error body (``retryable: true``),
  and ``/readyz`` answers 503, so clients and the kubelet move on to another replica;
- ``/healthz`` and ``/metrics`` keep answering (the pod is alive and scraped until the end);
- WebSocket sessions count as in flight; the route finds this object in ``scope["omoai.drain"]``
  and ends its session when ``stopping`` is set (the ASR realtime sessions send their final text
  and close with 1012); new WebSocket sessions are refused by the route;
- once nothing is in flight (or the timeout passed) uvicorn's own shutdown runs: listeners closed,
  the lifespan's cleanup, exit. A second SIGINT forces the exit as in uvicorn.

The chart sets ``OMOAI_SHUTDOWN_TIMEOUT_S`` from the pod's ``terminationGracePeriodSeconds`` (minus
the preStop delay and a margin). Only the serve commands import this module (it needs uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from omoai_core.errors import error_body
from omoai_core.settings import ServerSettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths that keep answering normally while draining.
ALWAYS_SERVED = ("/healthz", "/metrics")
#: Seconds uvicorn waits for connections after the drain, before it cancels what is left.
FINAL_GRACE_S = 3.0
#: Retry-After of the 503 answers: another replica should take the request.
RETRY_AFTER_S = 1


class Drain:
    """ASGI wrapper that counts in-flight requests and refuses new ones once draining."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.draining = False
        self.stopping = asyncio.Event()  # set with ``draining``: long-lived sessions wait on it

    def start_draining(self) -> None:
        self.draining = True
        self.stopping.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope["omoai.drain"] = self
            self.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1
            return
        if scope["type"] != "http" or scope["path"] in ALWAYS_SERVED:
            await self.app(scope, receive, send)
            return
        if self.draining:
            await _refuse(send, scope["path"] == "/readyz")
            return
        if scope["path"] == "/readyz":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _refuse(send: Send, probe: bool) -> None:
    message = "shutting down" if probe else "this replica is shutting down; retry on another"
    body = json.dumps(error_body("shutting_down", message, retryable=True)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first stop signal drains (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, drain: Drain, shutdown_timeout_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.shutdown_timeout_s = shutdown_timeout_s
        self._deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.should_exit:
            super().handle_exit(sig, frame)
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        self._captured_signals.append(sig)
        self.drain.start_draining()
        self._deadline = time.monotonic() + self.shutdown_timeout_s
        log.info(
            "stop signal %d: draining %d in-flight request(s) for up to %.0f s",
            sig,
            self.drain.in_flight,
            self.shutdown_timeout_s,
        )

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining and not self.should_exit and self._deadline is not None:
            if self.drain.in_flight == 0:
                log.info("drained: no request in flight, stopping")
                self.should_exit = True
            elif time.monotonic() >= self._deadline:
                log.warning("shutdown timeout: %d request(s) still in flight are cancelled", self.drain.in_flight)
                self.should_exit = True
        return await super().on_tick(counter)


A = TypeVar("A", bound=ASGIApp)


def serve(create_app: Callable[..., A], settings: ServerSettings, **overrides: Any) -> A:
    """A service's ``serve`` command: bind ``host:port`` once (:func:`omoai_http.server.bind`, a
    :class:`ConfigError` when it cannot), build the app with ``create_app(settings, on_fatal=...)``
    (a fatal error in it stops the server), serve it with the drain on that socket until stopped,
    and return the app (its state says how the start went)."""
    from omoai_http.server import bind

    with bind(settings.host, settings.port) as sock:
        server: DrainingServer | None = None

        def stop(_: BaseException) -> None:
            if server is not None:
                server.should_exit = True

        app = create_app(settings, on_fatal=stop)
        server = build_server(app, settings, **overrides)
        server.run(sockets=[sock])
    return app


def build_server(app: ASGIApp, settings: ServerSettings, **overrides: Any) -> DrainingServer:
    """The uvicorn server of a service (:func:`omoai_http.server.uvicorn_config`), its app wrapped in
    a :class:`Drain` that lasts up to ``settings.shutdown_timeout_s``."""
    from omoai_http.server import uvicorn_config

    drain = Drain(app)
    config = uvicorn_config(drain, settings, **{"timeout_graceful_shutdown": FINAL_GRACE_S, **overrides})
    return DrainingServer(config, drain, settings.shutdown_timeout_s)
