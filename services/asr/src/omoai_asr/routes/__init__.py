"""Thin HTTP routers: parse the request, call :class:`omoai_asr.serving.AsrServing`, render."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from omoai_http.validation import validate

from omoai_asr.serving import AsrServing
from omoai_asr.sse import EventStream

__all__ = ["ServingDep", "get_serving", "sse_response", "validate"]


def get_serving(request: Request) -> AsrServing:
    serving: AsrServing = request.app.state.serving
    return serving


ServingDep = Annotated[AsrServing, Depends(get_serving)]


def sse_response(events: AsyncIterator[tuple[str | None, object]]) -> EventStream:
    """``text/event-stream`` of ``(event name or None, JSON data)`` pairs (see `omoai_asr.sse`)."""
    return EventStream(events)
