"""Thin HTTP routers: parse the request, call :class:`omoai_asr.serving.AsrServing`, render."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse
from omoai_core.errors import OmoaiError, error_body
from omoai_http.validation import validate

from omoai_asr.serving import AsrServing

__all__ = ["ServingDep", "get_serving", "sse_response", "validate"]

log = logging.getLogger(__name__)


def get_serving(request: Request) -> AsrServing:
    serving: AsrServing = request.app.state.serving
    return serving


ServingDep = Annotated[AsrServing, Depends(get_serving)]


def sse_response(events: AsyncIterator[tuple[str | None, object]]) -> StreamingResponse:
    """``text/event-stream`` of ``(event name or None, JSON data)`` pairs.

    An error after the stream has started cannot change the status any more: it arrives as
    ``event: error`` with the usual error body. A client that hangs up closes ``events`` (its
    ``finally`` blocks stop the work).
    """

    async def body() -> AsyncIterator[bytes]:
        try:
            async for name, data in events:
                yield _event(name, data)
        except OmoaiError as e:
            yield _event("error", e.to_dict())
        except Exception:
            log.exception("a streamed answer failed")
            yield _event("error", error_body("internal_error", "the transcription failed", retryable=True))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _event(name: str | None, data: object) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()
