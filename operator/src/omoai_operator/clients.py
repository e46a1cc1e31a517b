"""HTTP clients of the ASR and LLM services, and the mapping of every outcome onto the two-word
error vocabulary (:mod:`omoai_operator.failures`): an error answer as its body says (``retryable``,
``code``); timeouts and connection errors retryable; answers that do not parse permanent.

The wire shapes are the services' own contracts, :mod:`omoai_core.contracts.asr` and
:mod:`omoai_core.contracts.llm`: requests are built with their request models, answers read through
their ``*Result`` models (which ignore what a newer service may add).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from omoai_core.contracts.asr import TRANSCRIPTIONS_PATH, TranscriptionOptions, UrlTranscriptionRequest
from omoai_core.contracts.llm import (
    PUNCTUATE_PATH,
    SUMMARIZE_PATH,
    TOPICS_PATH,
    PunctuateRequest,
    PunctuateResult,
    PunctuationMethod,
    SummarizeRequest,
    SummarizeResult,
    TopicsRequest,
    TopicsResult,
)
from omoai_core.errors import AUDIO_ERROR_CODES
from omoai_core.schemas import Quality, Segment, Summary, Topic, Transcript
from pydantic import BaseModel, Field, ValidationError

from omoai_operator.failures import ErrorAnswer, StageError, classify, read_error_body
from omoai_operator.placement import Grant
from omoai_operator.sse import EventParser, EventStreamError
from omoai_operator.transport import AiohttpTransport

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def _error_answer(resp: httpx.Response) -> ErrorAnswer:
    try:
        body = resp.json()
    except ValueError:
        body, detail = None, resp.text[:300].strip() or resp.reason_phrase
    else:
        detail = str(body)[:300]
        if isinstance(body, dict) and "detail" in body:
            detail = str(body["detail"])[:500]
    code, retryable, message = read_error_body(body)
    return ErrorAnswer(resp.status_code, message or detail or resp.reason_phrase, code, retryable, _retry_after(resp))


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify_response(service: str, path: str, resp: httpx.Response) -> StageError:
    return classify(f"{service} service {path} answered {resp.status_code}", _error_answer(resp))


class ServiceClient:
    """One service: base URL, optional bearer token, timeouts; ``post_json`` classifies failures."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 3600.0,
        connect_timeout_s: float = 10.0,
        max_connections: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            # The capacity queue bounds the requests in flight; the pool is of the same size.
            transport=transport or AiohttpTransport(max_connections),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @contextlib.asynccontextmanager
    async def post(
        self,
        path: str,
        payload: Mapping[str, Any] | None,
        *,
        at: Grant | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        """POST to the endpoint the stage's grant ``at`` placed it on (else the Service URL); the
        answer with a 2xx status (its body unread when ``stream``). Transport failures and error
        answers raise :class:`StageError`, classified."""
        placement = at if at is not None and at.service.upper() == self.service else None
        base = placement.url if placement is not None else self.base_url
        try:
            request = self._http.build_request(
                "POST", base + path if placement is not None else path, json=payload, **kwargs
            )
            resp = await self._http.send(request, stream=stream)
        except httpx.TimeoutException as e:
            raise StageError.temporary(
                "Timeout", f"{self.service} service {path} timed out ({type(e).__name__})"
            ) from e
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            if placement is not None:
                placement.unreachable()  # refused or broken: no new stages there for a while
            raise StageError.temporary(
                "ServiceUnavailable", f"cannot reach the {self.service} service at {base}: {e!s}"
            ) from e
        except httpx.TransportError as e:
            raise StageError.temporary("ConnectionError", f"{self.service} service {path}: {e!s}") from e
        try:
            if resp.status_code >= 400:
                if stream:
                    await _read(resp, self.service, path)
                raise classify_response(self.service, path, resp)
            yield resp
        finally:
            await resp.aclose()

    async def post_json(self, path: str, payload: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        async with self.post(path, payload, **kwargs) as resp:
            return _json(resp, self.service, path)


async def _read(resp: httpx.Response, service: str, path: str) -> bytes:
    try:
        return await resp.aread()
    except httpx.TransportError as e:
        raise StageError.temporary("StreamInterrupted", f"{service} service {path}: the answer broke off: {e!s}") from e


def _json(resp: httpx.Response, service: str, path: str) -> Any:
    try:
        return resp.json()
    except ValueError as e:
        raise StageError.permanent(
            "UpstreamProtocolError", f"{service} service {path} answered with non-JSON: {resp.text[:200]!r}"
        ) from e


def _parse(service: str, path: str, model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise StageError.permanent(
            "UpstreamProtocolError",
            f"{service} service {path} answered with an unexpected shape: {first['msg']} "
            f"at {'.'.join(str(p) for p in first['loc'])}; are the operator and service versions compatible?",
        ) from e


class AsrClient:
    PATH = TRANSCRIPTIONS_PATH

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def transcribe(
        self,
        audio_url: str,
        options: TranscriptionOptions,
        *,
        at: Grant | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Transcript:
        """The service fetches ``audio_url`` itself (http(s), or file:// on the shared volume)."""
        fields = options.model_dump(exclude_unset=True) | {"audio_url": audio_url, "format": "json"}
        request = UrlTranscriptionRequest.model_validate(fields)
        return await self._call(on_progress, request.model_dump(mode="json", exclude_unset=True), at=at)

    async def transcribe_file(
        self,
        path: Path,
        options: TranscriptionOptions,
        *,
        at: Grant | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Transcript:
        """Upload a local file (``omoai run`` without a shared volume)."""
        try:
            audio = path.read_bytes()
        except OSError as e:
            raise StageError.permanent("AudioNotFound", f"cannot read {path}: {e.strerror}") from e
        fields = options.form_fields() | {"format": "json"}
        return await self._call(on_progress, None, at=at, files={"file": (path.name, audio)}, data=fields)

    async def _call(
        self, on_progress: ProgressCallback | None, payload: Mapping[str, Any] | None, **kw: Any
    ) -> Transcript:
        """With ``on_progress``, ask for the streamed answer with the query parameter
        ``stream=true`` (a replica that predates streaming ignores a query parameter, where its strict
        body schema would refuse an unknown field): progress events as windows are decoded, then
        ``done`` with the transcript. A plain JSON answer (no streaming there) is read as before."""
        if on_progress is None:
            return _parse("ASR", self.PATH, Transcript, await self.client.post_json(self.PATH, payload, **kw))
        async with self.client.post(self.PATH, payload, stream=True, params={"stream": "true"}, **kw) as resp:
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                await _read(resp, "ASR", self.PATH)
                return _parse("ASR", self.PATH, Transcript, _json(resp, "ASR", self.PATH))
            return await self._events(resp, on_progress)

    async def _events(self, resp: httpx.Response, on_progress: ProgressCallback) -> Transcript:
        parser = EventParser()
        where = f"ASR service {self.PATH} (streamed)"
        try:
            async for text in resp.aiter_text():
                for ev in parser.feed(text):
                    if ev.event == "progress":
                        progress = _progress(ev.data)
                        if progress is not None:
                            await on_progress(*progress)
                    elif ev.event == "done":
                        return _parse("ASR", self.PATH, Transcript, _loads(ev.data, where))
                    elif ev.event == "error":
                        raise _stream_error(where, _loads(ev.data, where))
                    # ``segment`` and unknown events: the transcript comes whole with ``done``
        except httpx.TransportError as e:
            raise StageError.temporary("StreamInterrupted", f"{where}: the stream broke off: {e!s}") from e
        except EventStreamError as e:
            raise StageError.permanent("UpstreamProtocolError", f"{where}: {e}") from e
        raise StageError.temporary("StreamInterrupted", f"{where}: the stream ended without its done event")


#: ``(audio_seconds_done, audio_seconds_total)`` as the ASR service reports them while decoding.
ProgressCallback = Callable[[float, float], Awaitable[None]]


class _Progress(BaseModel):
    audio_seconds_done: float = Field(ge=0, allow_inf_nan=False)
    audio_seconds_total: float = Field(ge=0, allow_inf_nan=False)


def _progress(data: str) -> tuple[float, float] | None:
    """A progress event's numbers; a malformed one is skipped (it only delays the next update)."""
    try:
        p = _Progress.model_validate_json(data)
    except ValidationError:
        log.debug("skipping a malformed ASR progress event: %.200s", data)
        return None
    return p.audio_seconds_done, p.audio_seconds_total


def _loads(data: str, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise StageError.permanent("UpstreamProtocolError", f"{where}: an event is not JSON: {data[:200]!r}") from e


def _stream_error(where: str, body: Any) -> StageError:
    """An ``error`` event, handled like the same error body in a non-streamed answer."""
    code, retryable, message = read_error_body(body)
    if code in AUDIO_ERROR_CODES:
        status = 422
    else:
        status = 400 if retryable is False else 500
    return classify(f"{where} failed", ErrorAnswer(status, message or str(body)[:300], code, retryable))


def _for_llm(segments: Sequence[Segment]) -> list[Segment]:
    """The segments without their word timings: the LLM service works on text. The speaker
    (diarization) goes along: summaries and topics may attribute ideas to speakers."""
    return [Segment(text=s.text, start=s.start, end=s.end, speaker=s.speaker) for s in segments]


def _body(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_defaults=True)


class LlmClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def punctuate(
        self,
        segments: Sequence[Segment],
        language: str,
        method: PunctuationMethod | None = None,
        *,
        at: Grant | None = None,
    ) -> tuple[list[Segment], Quality | None]:
        """``method`` unset is left out of the request (the service's default; older services accept it)."""
        request = PunctuateRequest(segments=_for_llm(segments), language=language, method=method)
        data = await self.client.post_json(PUNCTUATE_PATH, _body(request), at=at)
        result = _parse("LLM", PUNCTUATE_PATH, PunctuateResult, data)
        return result.segments, result.quality

    async def summarize(
        self, segments: Sequence[Segment], language: str, mode: str, *, at: Grant | None = None
    ) -> Summary:
        request = SummarizeRequest(segments=_for_llm(segments), language=language)
        data = await self.client.post_json(SUMMARIZE_PATH, _body(request), at=at)
        summary = _parse("LLM", SUMMARIZE_PATH, SummarizeResult, data).summary
        if mode == "abstract":
            summary = summary.model_copy(update={"bullets": []})
        return summary

    async def topics(self, segments: Sequence[Segment], language: str, *, at: Grant | None = None) -> list[Topic]:
        request = TopicsRequest(segments=_for_llm(segments), language=language)
        data = await self.client.post_json(TOPICS_PATH, _body(request), at=at)
        return _parse("LLM", TOPICS_PATH, TopicsResult, data).topics
