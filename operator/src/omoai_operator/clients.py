"""HTTP clients of the ASR and LLM services, and the mapping of every outcome onto the two-word
error vocabulary: retryable (service unavailable, 429, 5xx, timeouts, connection errors) or
permanent (4xx, undecodable audio, answers that do not parse).

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

from omoai_operator.reconcile import Failure
from omoai_operator.transport import AiohttpTransport

log = logging.getLogger(__name__)


class StageError(Exception):
    """A failed call, classified. ``failure.retryable`` decides between backoff and Failed."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.reason}: {failure.message}")
        self.failure = failure

    @classmethod
    def permanent(cls, reason: str, message: str) -> StageError:
        return cls(Failure(reason, message, retryable=False))

    @classmethod
    def temporary(cls, reason: str, message: str, retry_after_s: float | None = None) -> StageError:
        return cls(Failure(reason, message, retryable=True, retry_after_s=retry_after_s))


#: Permanent reasons by HTTP status (what the user has to fix).
_PERMANENT_REASONS = {
    400: "InvalidRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    413: "AudioTooLarge",
    415: "UnsupportedMedia",
    422: "InvalidAudio",
}


def _error_detail(resp: httpx.Response) -> tuple[str | None, str]:
    try:
        body = resp.json()
    except ValueError:
        return None, resp.text[:300].strip() or resp.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return err.get("code"), str(err.get("message") or err.get("code") or resp.reason_phrase)
    if isinstance(body, dict) and "detail" in body:
        return None, str(body["detail"])[:500]
    return None, str(body)[:300]


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify_response(service: str, path: str, resp: httpx.Response) -> StageError:
    code, detail = _error_detail(resp)
    where = f"{service} service {path} answered {resp.status_code}"
    if resp.status_code == 429:
        return StageError.temporary("ServiceOverloaded", f"{where}: {detail}", _retry_after(resp))
    if resp.status_code >= 500 or resp.status_code == 408:
        reason = "ServiceUnavailable" if resp.status_code in (502, 503, 504) else "ServiceError"
        return StageError.temporary(reason, f"{where}: {detail}", _retry_after(resp))
    reason = _PERMANENT_REASONS.get(resp.status_code, "Rejected")
    if code in ("empty_audio", "corrupt_audio", "not_audio", "audio_too_short", "audio_too_long", "invalid_audio"):
        reason = "InvalidAudio"
    suffix = f" ({code})" if code else ""
    return StageError.permanent(reason, f"{where}{suffix}: {detail}")


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
        try:
            resp = await self._http.post(path, json=payload, **kwargs)
        except httpx.TimeoutException as e:
            raise StageError.temporary("Timeout", f"{self.service} service {path} timed out ({type(e).__name__})") from e
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise StageError.temporary(
                "ServiceUnavailable", f"cannot reach the {self.service} service at {self.base_url}: {e!s}"
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
    # The speaker (diarization) goes along: summaries and topics may attribute ideas to speakers.
    return [
        {"text": s.text, "start": s.start, "end": s.end, **({"speaker": s.speaker} if s.speaker else {})}
        for s in segments
    ]


class LlmClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def punctuate(self, segments: Sequence[Segment], language: str) -> tuple[list[Segment], Quality | None]:
        path = "/v1/punctuate"
        data = await self.client.post_json(path, {"segments": _segments_payload(segments), "language": language})
        if not isinstance(data, dict) or "segments" not in data:
            raise StageError.permanent("UpstreamProtocolError", f"LLM service {path} answered without segments")
        out = [_parse("LLM", path, Segment, {k: v for k, v in s.items() if k in ("text", "start", "end", "words", "speaker")})
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
