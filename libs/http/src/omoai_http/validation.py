"""Request data into pydantic models, with one 400 that names every bad field: the services'
``validate`` (JSON bodies, form fields, query options) and FastAPI's own validation errors say
the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from omoai_core.errors import InvalidInputError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def problems(errors: Iterable[Any]) -> list[str]:
    """``"<field.path>: <what is wrong>"`` per pydantic error (``loc`` without FastAPI's ``body``)."""
    out = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
        out.append(f"{loc}: {msg}")
    return out


def invalid_request(errors: Iterable[Any]) -> InvalidInputError:
    found = problems(errors)
    return InvalidInputError("invalid request: " + "; ".join(found), details={"errors": found})


def validate(model: type[M], data: Any) -> M:
    """``model`` from request data; a validation failure is one 400 naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_request(e.errors()) from None
