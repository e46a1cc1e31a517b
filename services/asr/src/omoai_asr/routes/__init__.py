"""Thin HTTP routers: parse the request, call :class:`omoai_asr.serving.AsrServing`, render."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from omoai_core.errors import InvalidInputError
from pydantic import BaseModel, ValidationError

from omoai_asr.serving import AsrServing

M = TypeVar("M", bound=BaseModel)


def get_serving(request: Request) -> AsrServing:
    serving: AsrServing = request.app.state.serving
    return serving


ServingDep = Annotated[AsrServing, Depends(get_serving)]


def validate(model: type[M], data: Any) -> M:
    """``model`` from request data; a validation failure is one 400 naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "request"
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            problems.append(f"{loc}: {msg}")
        raise InvalidInputError("invalid request: " + "; ".join(problems), details={"errors": problems}) from None
