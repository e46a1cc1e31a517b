"""Loopback servers the system test puts between components: a TCP link that can be cut (an S3
server dropping off the network), and a static file server (audio behind an http URL).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp.web

from tests.support.operator_services import LoopbackApp, LoopThread
from tests.support.processes import free_port


class TcpLink:
    """Forwards ``127.0.0.1:port`` to ``upstream_port`` byte for byte. :meth:`cut` resets every open
    connection and every new one until :meth:`mend` (the server dropped off the network);
    ``refused`` counts the connections turned away meanwhile."""

    def __init__(self, upstream_port: int, name: str = "tcp-link") -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lt = LoopThread(name)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.is_cut = False
        self.refused = 0
        self._lt.run(self._listen())

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._conns |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._conns -= {writer, up_writer}

    async def _cut(self, *, close: bool = False) -> None:
        self.is_cut = True
        if close and self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            with contextlib.suppress(OSError):
                w.transport.abort()
        self._conns.clear()

    def cut(self) -> None:
        self.cuts += 1
        self._lt.run(self._cut())

    def mend(self) -> None:
        self.is_cut = False

    def close(self) -> None:
        self._lt.run(self._cut(close=True))
        self._lt.stop()


class StaticFiles(LoopbackApp):
    """``GET /<path>`` serves files under ``root`` (audio_url sources over plain http)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.slow_prefix = "slow/"  # paths under it answer after ``slow_s`` (a slow origin)
        self.slow_s = 20.0
        super().__init__("static-files")
        self.url = f"http://127.0.0.1:{self.port}"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_get("/{path:.+}", self._get)
        return app

    async def _get(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.hits += 1
        if request.match_info["path"].startswith(self.slow_prefix):
            await asyncio.sleep(self.slow_s)
        path = (self.root / request.match_info["path"]).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return aiohttp.web.Response(status=404, text="not found")
        return aiohttp.web.FileResponse(path)
