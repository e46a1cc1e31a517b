"""HTTP clients of the ASR and LLM services, and the mapping of every outcome onto the two-word
error vocabulary (:mod:`omoai_operator.failures`): an error answer as its body says (``retryable``,
``code``); timeouts and connection errors retryable; answers that do not parse permanent.

The wire shapes are the shared ones in :mod:`omoai_core.schemas`: the ASR service answers
``POST /v1/transcriptions`` with a Transcript; the LLM service takes segments and answers with
segments plus Quality, a Summary or Topics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from omoai_core.schemas import Quality, Segment, Summary, Topic, Transcript
from pydantic import ValidationError

from omoai_operator.endpoints import ROUTE
from omoai_operator.failures import ErrorAnswer, StageError, classify, read_error_body
from omoai_operator.transport import AiohttpTransport

log = logging.getLogger(__name__)


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

    async def post_json(self, path: str, payload: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        # A stage placed on one endpoint of the service calls that endpoint, not the Service URL.
        placement = ROUTE.get()
        if placement is not None and placement.service.upper() != self.service:
            placement = None
        base = placement.url if placement is not None else self.base_url
        try:
            resp = await self._http.post(base + path if placement is not None else path, json=payload, **kwargs)
        except httpx.TimeoutException as e:
            raise StageError.temporary("Timeout", f"{self.service} service {path} timed out ({type(e).__name__})") from e
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            if placement is not None:
                placement.unreachable()  # refused or broken: no new stages there for a while
            raise StageError.temporary(
                "ServiceUnavailable", f"cannot reach the {self.service} service at {base}: {e!s}"
            ) from e
        except httpx.TransportError as e:
            raise StageError.temporary("ConnectionError", f"{self.service} service {path}: {e!s}") from e
        if resp.status_code >= 400:
            raise classify_response(self.service, path, resp)
        try:
            return resp.json()
        except ValueError as e:
            raise StageError.permanent(
                "UpstreamProtocolError", f"{self.service} service {path} answered with non-JSON: {resp.text[:200]!r}"
            ) from e


def _parse(service: str, path: str, model: Any, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise StageError.permanent(
            "UpstreamProtocolError",
            f"{service} service {path} answered with an unexpected shape: {e.errors()[0]['msg']} "
            f"at {'.'.join(str(p) for p in e.errors()[0]['loc'])}; are the operator and service versions compatible?",
        ) from e


class AsrClient:
    PATH = "/v1/transcriptions"

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def transcribe(self, audio_url: str, options: Mapping[str, Any]) -> Transcript:
        """The service fetches ``audio_url`` itself (http(s), or file:// on the shared volume)."""
        data = await self.client.post_json(self.PATH, {"audio_url": audio_url, "format": "json", **options})
        return _parse("ASR", self.PATH, Transcript, data)

    async def transcribe_file(self, path: Path, options: Mapping[str, Any]) -> Transcript:
        """Upload a local file (``omoai run`` without a shared volume)."""
        try:
            audio = path.read_bytes()
        except OSError as e:
            raise StageError.permanent("AudioNotFound", f"cannot read {path}: {e.strerror}") from e
        fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in {**options, "format": "json"}.items()}
        data = await self.client.post_json(self.PATH, None, files={"file": (path.name, audio)}, data=fields)
        return _parse("ASR", self.PATH, Transcript, data)


def _segments_payload(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    return [{"text": s.text, "start": s.start, "end": s.end} for s in segments]


class LlmClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def punctuate(self, segments: Sequence[Segment], language: str) -> tuple[list[Segment], Quality | None]:
        path = "/v1/punctuate"
        data = await self.client.post_json(path, {"segments": _segments_payload(segments), "language": language})
        if not isinstance(data, dict) or "segments" not in data:
            raise StageError.permanent("UpstreamProtocolError", f"LLM service {path} answered without segments")
        out = [_parse("LLM", path, Segment, {k: v for k, v in s.items() if k in ("text", "start", "end", "words")})
               for s in data["segments"]]
        quality = _parse("LLM", path, Quality, data["quality"]) if data.get("quality") else None
        return out, quality

    async def summarize(self, segments: Sequence[Segment], language: str, mode: str) -> Summary:
        path = "/v1/summarize"
        data = await self.client.post_json(path, {"segments": _segments_payload(segments), "language": language})
        if isinstance(data, dict) and isinstance(data.get("summary"), dict):
            data = data["summary"]
        summary = _parse("LLM", path, Summary, data)
        if mode == "abstract":
            summary = summary.model_copy(update={"bullets": []})
        return summary

    async def topics(self, segments: Sequence[Segment], language: str) -> list[Topic]:
        path = "/v1/topics"
        data = await self.client.post_json(path, {"segments": _segments_payload(segments), "language": language})
        if isinstance(data, dict):
            data = data.get("topics")
        if not isinstance(data, list):
            raise StageError.permanent("UpstreamProtocolError", f"LLM service {path} answered without topics")
        return [_parse("LLM", path, Topic, t) for t in data]
