"""The HTTP routes: thin; each hands a handler to the shared request lifecycle
(:mod:`omoai_http.lifecycle`: admission before the body is read, the request deadline, bounded
body reading, cancellation when the client hangs up), which parses and validates the JSON body
and calls :class:`omoai_llm.service.LlmService`.

Bodies are parsed here, not by FastAPI, so authentication (a middleware) and admission always come
before the body is read, and a malformed body (deep nesting, ``NaN``, ``1e309``) is a 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from omoai_core.errors import UnavailableError
from omoai_http.lifecycle import Body, RequestLifecycle
from omoai_http.validation import validate
from pydantic import BaseModel

from omoai_llm.protocol import (
    ModelsResponse,
    PostprocessRequest,
    PostprocessResponse,
    PunctuateRequest,
    PunctuateResponse,
    SummarizeRequest,
    SummarizeResponse,
    TopicsRequest,
    TopicsResponse,
)
from omoai_llm.service import LlmService

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _run(request: Request, model: type[M], op: Callable[[LlmService, M], Awaitable[T]]) -> T:
    service: LlmService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise UnavailableError("the model is not loaded; retry shortly")
    lifecycle: RequestLifecycle = request.app.state.lifecycle

    async def handle(body: Body) -> T:
        req = validate(model, await body.json())
        return await op(service, req)

    return await lifecycle.run(request, handle)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/models", response_model=ModelsResponse)
    async def models(request: Request) -> ModelsResponse:
        """The configured models (LLMs and the tagger), which are loaded, and their licences."""
        service: LlmService | None = getattr(request.app.state, "service", None)
        if service is None:
            raise UnavailableError("the model is not loaded; retry shortly")
        return service.models()

    @router.post("/punctuate", response_model=PunctuateResponse, openapi_extra=_json_body(PunctuateRequest))
    async def punctuate(request: Request) -> PunctuateResponse:
        """Punctuation and casing; every input word survives in order, every segment keeps its times."""
        return await _run(request, PunctuateRequest, LlmService.punctuate)

    @router.post("/summarize", response_model=SummarizeResponse, openapi_extra=_json_body(SummarizeRequest))
    async def summarize(request: Request) -> SummarizeResponse:
        """Title, abstract and bullet points (single pass or map-reduce by token count)."""
        return await _run(request, SummarizeRequest, LlmService.summarize)

    @router.post("/topics", response_model=TopicsResponse, openapi_extra=_json_body(TopicsRequest))
    async def topics(request: Request) -> TopicsResponse:
        """Key topics, each starting at a real segment's start time."""
        return await _run(request, TopicsRequest, LlmService.topics)

    @router.post("/postprocess", response_model=PostprocessResponse, openapi_extra=_json_body(PostprocessRequest))
    async def postprocess(request: Request) -> PostprocessResponse:
        """Punctuation, then summary and topics of the punctuated text, in one call."""
        return await _run(request, PostprocessRequest, LlmService.postprocess)

    return router
