"""An httpx transport that sends requests with aiohttp.

The service clients keep httpx's API (and its exceptions, which :mod:`omoai_operator.clients`
classifies; tests hand in ``httpx.MockTransport``), but not httpcore's connection pool: with a pool
as large as the capacity limits, httpcore polls every pooled connection on each request, which cost
about 3 ms of the operator's event loop per service call. aiohttp's connector does not.
"""

from __future__ import annotations

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
            async with self._client().request(
                request.method,
                str(request.url),
                data=body or None,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                content = await resp.read()
                raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers]
                status = resp.status
        except TimeoutError as e:  # aiohttp's socket timeouts (the deadline cancels instead)
            if isinstance(e, aiohttp.ConnectionTimeoutError):
                raise httpx.ConnectTimeout(str(e) or "connect timed out", request=request) from e
            raise httpx.ReadTimeout(str(e) or "read timed out", request=request) from e
        except aiohttp.ClientConnectorError as e:
            raise httpx.ConnectError(str(e), request=request) from e
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            raise httpx.RemoteProtocolError(str(e) or type(e).__name__, request=request) from e
        except (aiohttp.ClientOSError, ConnectionError) as e:
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        except aiohttp.ClientError as e:
            raise httpx.TransportError(str(e) or type(e).__name__) from e
        return httpx.Response(status, headers=raw, content=content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
