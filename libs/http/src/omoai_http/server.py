"""How the services are served: the one place that builds ``uvicorn.Config`` from settings.

Connection-level limits live here: request headers bigger than ``max_header_bytes`` are refused
(400) instead of buffered, a client has ``header_timeout_s`` from connecting (or from the first
byte of its next request on a kept-alive connection) to finish its headers, else the connection
gets 408 and is closed; idle kept-alive connections close after ``keep_alive_timeout_s``. Request
bodies have their own per-read and total time-outs in :mod:`omoai_http.lifecycle`. The h11 protocol
is used on purpose: it bounds incomplete headers, which the httptools parser does not.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from omoai_core.errors import ConfigError
from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\nrequest header timed out"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a time-out on receiving a request's headers (slowloris)."""

    header_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # bytes of a new request: its headers are on the clock
            self._arm_header_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; the keep-alive rules apply after it
        self.logger.debug("closing a connection whose request headers did not arrive in time")
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def uvicorn_config(app: Any, settings: Any, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of a service from its ``ServerSettings`` (``overrides`` win)."""
    protocol = type("OmoaiH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": float(settings.header_timeout_s)})
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "log_config": None,  # our handler on the root logger (JSON in the cluster)
        "timeout_graceful_shutdown": 30,
        "proxy_headers": False,
        "server_header": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def check_bindable(host: str, port: int) -> None:
    """:class:`ConfigError` now, with one clear line, when ``host:port`` cannot be listened on
    (uvicorn would log the OSError and exit 1 only after the app was built)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
