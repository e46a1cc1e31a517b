"""An httpx transport that sends requests with aiohttp.

The service clients keep httpx's API (and its exceptions, which :mod:`omoai_operator.clients`
classifies; tests hand in ``httpx.MockTransport``), but not httpcore's connection pool: with a pool
as large as the capacity limits, httpcore polls every pooled connection on each request, which cost
about 3 ms of the operator's event loop per service call. aiohttp's connector does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` connections (None: unbounded); the session is created on first
    use, inside the event loop that uses it."""

    def __init__(self, max_connections: int | None = None) -> None:
        self._limit = max_connections or 0
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                auto_decompress=False,  # httpx decodes the body by its Content-Encoding
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.get("connect"), sock_read=t.get("read"))
        body = await request.aread()
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers.raw
            if k.lower() not in (b"host", b"content-length", b"transfer-encoding")
        ]
        try:
            resp = await self._client().request(
                request.method,
                str(request.url),
                data=body or None,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
            raise _translated(e, request) from e
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers]
        # The body streams: a caller reading server-sent events sees each one as it comes.
        return httpx.Response(resp.status, headers=raw, stream=_Body(resp, request), request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it: chunks as they arrive, errors translated."""

    def __init__(self, resp: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._resp = resp
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
            raise _translated(e, self._request) from e

    async def aclose(self) -> None:
        self._resp.release()


def _translated(e: BaseException, request: httpx.Request) -> httpx.TransportError:
    """httpx's exception for what aiohttp raised (the service clients classify httpx's)."""
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(e) or "connect timed out", request=request)
    if isinstance(e, TimeoutError):  # aiohttp's socket timeouts (the deadline cancels instead)
        return httpx.ReadTimeout(str(e) or "read timed out", request=request)
    if isinstance(e, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(e), request=request)
    if isinstance(e, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(str(e) or type(e).__name__, request=request)
    if isinstance(e, (aiohttp.ClientOSError, ConnectionError)):
        return httpx.ReadError(str(e) or type(e).__name__, request=request)
    return httpx.TransportError(str(e) or type(e).__name__)
