"""How the services are served: the one place that builds ``uvicorn.Config`` from settings.

Connection-level limits live here: a request head (request line and headers) bigger than
``max_header_bytes`` is refused with 400 and the connection closed, whether it arrives in pieces
or complete in one read (h11 itself bounds only an incomplete buffer); a client has
``header_timeout_s`` from connecting (or from the first byte of its next request on a kept-alive
connection) to finish its headers, else the connection gets 408 and is closed; idle kept-alive
connections close after ``keep_alive_timeout_s``; after an answer given before the request's
body was all received (a 408 for a trickled body, a 413, a 429) the rest of the body is read and
dropped for at most ``BODY_DRAIN_S`` (a client that finishes sending can reuse the connection),
then the connection is closed, even while the client keeps sending. Request bodies have their own per-read and total time-outs in
:mod:`omoai_http.lifecycle`. The h11 protocol is used on purpose: it bounds incomplete headers,
which the httptools parser does not.

:class:`GuardedH11Protocol` extends uvicorn's ``H11Protocol`` through its attributes ``conn``,
``cycle``, ``transport``, ``loop`` and ``logger`` and its hooks ``data_received``,
``on_response_complete`` and ``connection_lost``: uvicorn is pinned to the range these were tested
on (``libs/http/pyproject.toml``), and ``tests/unit/libs/test_http_server.py`` checks each guard.
WebSocket upgrades are handed to uvicorn's separate ``ws`` protocol as before (the guards stop at
the upgrade request).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from omoai_core.errors import ConfigError
from omoai_core.settings import ServerSettings
from uvicorn.protocols.http.h11_impl import H11Protocol


def _plain(status: str, text: str) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {len(text)}\r\n"
        f"connection: close\r\n\r\n{text}"
    ).encode()


_TIMEOUT_RESPONSE = _plain("408 Request Timeout", "request header timed out")
_TOO_LARGE_RESPONSE = _plain("400 Bad Request", "request header too large")
_HEAD_END = b"\r\n\r\n"
#: After refusing a request head: how long the half-closed connection reads (and drops) what the
#: client still sends before it closes, so the answer reaches the client instead of a reset.
LINGER_S = 1.0
#: After an answer given before the request body was all received: how long the rest of the body
#: may take to arrive (read and dropped, keeping the connection reusable) before the close.
BODY_DRAIN_S = 5.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a time-out on receiving a request's headers (slowloris), a bound
    on a complete request head, and a close after an answer that left the request body unread."""

    header_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024
    body_drain_s: float = BODY_DRAIN_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_seen = 0  # bytes of the request head received so far
        self._head_tail = b""  # the last bytes of them: the blank line may straddle two reads
        self._lingering = False
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent and the connection is closing: the rest of the body is dropped
        if self.conn.their_state is h11.IDLE:  # bytes of a new request: its headers are on the clock
            self._arm_header_timer()
            if self._head_size(data) > self.max_header_bytes:
                self.logger.debug("closing a connection whose request head is over %d bytes", self.max_header_bytes)
                self._disarm_header_timer()
                self.transport.write(_TOO_LARGE_RESPONSE)
                self._linger_close()
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()
            self._head_seen, self._head_tail = 0, b""

    def _head_size(self, data: bytes) -> int:
        """The size of the request head with ``data``: up to its blank line once that has come."""
        window = self._head_tail + data
        end = window.find(_HEAD_END)
        size = self._head_seen + len(data) if end < 0 else self._head_seen - len(self._head_tail) + end + 4
        self._head_seen += len(data)
        self._head_tail = window[-(len(_HEAD_END) - 1) :]
        return size

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_header_timer()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # Answered before the body was all received: uvicorn drops the rest as it comes, which a
            # trickling client could make last for ever. Give it body_drain_s, then close.
            self.loop.call_later(self.body_drain_s, self._drain_expired, self.cycle)

    def _drain_expired(self, cycle: object) -> None:
        if self.cycle is cycle and self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.logger.debug(
                "closing a connection whose unread request body still arrives after %gs", self.body_drain_s
            )
            self.transport.close()

    def _linger_close(self) -> None:
        """Half-close after the answer, drop what the client still sends, close after ``LINGER_S``:
        closing at once with unread bytes would reset the connection and could lose the answer."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

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


def uvicorn_config(app: Any, settings: ServerSettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of a service from its ``ServerSettings`` (``overrides`` win)."""
    guards = {"header_timeout_s": float(settings.header_timeout_s), "max_header_bytes": settings.max_header_bytes}
    protocol = type("OmoaiH11Protocol", (GuardedH11Protocol,), guards)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "log_config": None,  # our handler on the root logger (JSON in the cluster)
        "proxy_headers": False,
        "server_header": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket for ``host:port``, bound once before the app is built, so an address in
    use is one clear :class:`ConfigError` line and the server serves on exactly this socket
    (``server.run(sockets=[sock])``: no second bind that could lose a race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
