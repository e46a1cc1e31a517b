"""The HTTP routes: thin; each validates, takes an admission slot, applies the request deadline and
hands over to :class:`omoai_llm.service.LlmService`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from omoai_core.errors import TimeoutError_
from omoai_http.admission import Admission

from omoai_llm.protocol import (
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

T = TypeVar("T")


def _service(request: Request) -> LlmService:
    return request.app.state.service


def _admission(request: Request) -> Admission:
    return request.app.state.admission


ServiceDep = Annotated[LlmService, Depends(_service)]
AdmissionDep = Annotated[Admission, Depends(_admission)]


async def _run(service: LlmService, admission: AdmissionDep, work: Coroutine[Any, Any, T]) -> T:
    limit = service.settings.request_timeout_s
    try:
        async with admission.slot():
            async with asyncio.timeout(limit):
                return await work
    except TimeoutError as e:
        raise TimeoutError_(f"the request took longer than {limit:g}s", details={"timeout_s": limit}) from e
    finally:
        work.close()  # a no-op once it ran; refused before it started: no "never awaited" warning


def build_router(auth: Callable[..., Awaitable[None]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)])

    @router.post("/punctuate", response_model=PunctuateResponse)
    async def punctuate(req: PunctuateRequest, service: ServiceDep, admission: AdmissionDep) -> PunctuateResponse:
        """Punctuation and casing; every input word survives in order, every segment keeps its times."""
        return await _run(service, admission, service.punctuate(req))

    @router.post("/summarize", response_model=SummarizeResponse)
    async def summarize(req: SummarizeRequest, service: ServiceDep, admission: AdmissionDep) -> SummarizeResponse:
        """Title, abstract and bullet points (single pass or map-reduce by token count)."""
        return await _run(service, admission, service.summarize(req))

    @router.post("/topics", response_model=TopicsResponse)
    async def topics(req: TopicsRequest, service: ServiceDep, admission: AdmissionDep) -> TopicsResponse:
        """Key topics, each starting at a real segment's start time."""
        return await _run(service, admission, service.topics(req))

    @router.post("/postprocess", response_model=PostprocessResponse)
    async def postprocess(req: PostprocessRequest, service: ServiceDep, admission: AdmissionDep) -> PostprocessResponse:
        """Punctuation, then summary and topics of the punctuated text, in one call."""
        return await _run(service, admission, service.postprocess(req))

    return router
