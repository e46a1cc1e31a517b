"""Thin HTTP routers: parse the request, call :class:`omoai_asr.serving.AsrServing`, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from omoai_http.validation import validate

from omoai_asr.serving import AsrServing

__all__ = ["ServingDep", "get_serving", "validate"]


def get_serving(request: Request) -> AsrServing:
    serving: AsrServing = request.app.state.serving
    return serving


ServingDep = Annotated[AsrServing, Depends(get_serving)]
