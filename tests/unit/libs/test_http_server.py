"""omoai_http.server against a real uvicorn on loopback, served in a thread on the socket ``bind``
returned: the request-head limit holds for a head that arrives whole in one write; after an answer
given before the request body was all received, a client that finishes its body keeps its
connection and one that keeps trickling is cut off; kept-alive connections and WebSocket upgrades
still work, and an address in use is one ConfigError.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from omoai_core.errors import ConfigError
from omoai_core.settings import ServerSettings
from omoai_http.server import bind, uvicorn_config

from tests.security.harness import read_response, status_of

pytestmark = pytest.mark.timeout(60)

DRAIN_S = 1.0  # the protocol's body_drain_s here (5 s in the services)


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.post("/early")
    async def early() -> PlainTextResponse:  # answers without reading the body, as a 408/413/429 does
        return PlainTextResponse("too slow", status_code=408)

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    return app


@contextlib.contextmanager
def _serving(settings: ServerSettings) -> Iterator[tuple[str, int]]:
    sock = bind(settings.host, 0)
    port = sock.getsockname()[1]
    config = uvicorn_config(_app(), settings, log_level="warning")
    config.http.body_drain_s = DRAIN_S  # a class made for this config alone
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        yield settings.host, port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    with _serving(ServerSettings()) as a:  # the documented defaults: a 64 KiB request head
        yield a


def _get(filler: int) -> bytes:
    return b"GET /ok HTTP/1.1\r\nhost: x\r\nx-filler: " + b"a" * filler + b"\r\n\r\n"


def test_a_70000_byte_header_sent_in_one_write_is_refused_with_400_and_closed(address) -> None:
    head = _get(70_000)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head)
        response = read_response(sock, 10)
        assert status_of(response) == 400, response[:200]
        assert b"connection: close" in response.lower()
        assert sock.recv(1) == b"", "the connection stays open"


def test_a_head_just_under_the_limit_is_served_and_the_connection_kept_alive(address) -> None:
    head = _get(ServerSettings().max_header_bytes - 200)
    with socket.create_connection(address, timeout=10) as sock:
        for _ in range(2):  # the limit counts each request's head afresh on a kept-alive connection
            sock.sendall(head)
            assert status_of(read_response(sock, 10)) == 200


def test_a_head_over_the_limit_in_small_pieces_is_refused(address) -> None:
    head = _get(70_000)
    with socket.create_connection(address, timeout=10) as sock:
        with contextlib.suppress(OSError):
            for i in range(0, len(head), 1000):
                sock.sendall(head[i : i + 1000])
        assert status_of(read_response(sock, 10)) == 400


def test_an_answer_before_the_body_ends_closes_the_connection_while_the_client_keeps_sending(address) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nxx")
        response = read_response(sock, 10)
        assert status_of(response) == 408, response[:200]
        sent_until = time.monotonic() + DRAIN_S + 5
        with contextlib.suppress(OSError):  # reset by the peer: closed
            while time.monotonic() < sent_until:
                sock.sendall(b"x")  # a body trickled on after the answer
                time.sleep(0.1)
        closed = time.monotonic() < sent_until
        assert closed, "the server kept reading the trickled body"


def test_a_client_that_finishes_its_unread_body_after_an_early_answer_keeps_its_connection(address) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
        assert status_of(read_response(sock, 10)) == 408
        sock.sendall(b"x" * 100_000)  # the rest of the body, at once: dropped by the server
        time.sleep(DRAIN_S + 0.5)  # past the drain: the connection must not be cut now
        sock.sendall(_get(10))
        assert status_of(read_response(sock, 10)) == 200


def test_a_websocket_upgrade_passes_the_guarded_protocol(address) -> None:
    from websockets.sync.client import connect

    host, port = address
    with connect(f"ws://{host}:{port}/ws", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"


def test_binding_an_address_in_use_is_one_config_error(address) -> None:
    host, port = address
    with pytest.raises(ConfigError, match=f"cannot listen on {host}:{port}"):
        bind(host, port)
