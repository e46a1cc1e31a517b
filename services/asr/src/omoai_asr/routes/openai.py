"""OpenAI-compatible ``POST /v1/audio/transcriptions`` and ``GET /v1/models``, so the official
``openai`` client works against this server unchanged (``base_url=http://host:port/v1``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from omoai_core.errors import EmptyAudioError, InvalidInputError, NotFoundError
from omoai_formats import render
from omoai_http.lifecycle import Body
from starlette.datastructures import UploadFile

from omoai_asr.checkpoints import checkpoint_license
from omoai_asr.diarization.types import DiarizationOptions
from omoai_asr.geometry import DecodeOptions
from omoai_asr.protocol import (
    MEDIA_TYPES,
    ModelCard,
    ModelList,
    OpenAIOptions,
    TranscriptionOptions,
    diarized_json,
    verbose_json,
)
from omoai_asr.routes import ServingDep, sse_response, validate
from omoai_asr.serving import AsrServing
from omoai_asr.speaker_references import decode_references

router = APIRouter(tags=["openai"])

_IGNORED = frozenset({"chunking_strategy"})  # accepted for compatibility; long-form decoding always chunks
_SPEAKER_LISTS = frozenset({"known_speaker_names", "known_speaker_references"})  # repeated form fields
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "model"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **OpenAIOptions.model_json_schema()["properties"],
                    },
                }
            }
        },
    }
}


@router.post("/v1/audio/transcriptions", openapi_extra=_OPENAPI, summary="OpenAI-compatible transcription")
async def audio_transcriptions(request: Request, serving: ServingDep) -> Response:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "multipart/form-data":
        raise InvalidInputError("send multipart/form-data with the fields 'file' and 'model'")
    return await serving.run(request, lambda body: _transcribe_form(body, serving))


async def _transcribe_form(body: Body, serving: AsrServing) -> Response:
    form = await body.form(max_files=1, max_fields=32)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInputError("the form field 'file' (the audio file) is required")
    fields: dict[str, Any] = {}
    granularities: list[str] = []
    for key, value in form.multi_items():
        if key == "file" or key in _IGNORED:
            continue
        if isinstance(value, UploadFile):
            raise InvalidInputError(f"the form field {key!r} must not be a file")
        if key in ("timestamp_granularities[]", "timestamp_granularities"):
            granularities.append(value)
        elif key.removesuffix("[]") in _SPEAKER_LISTS:
            fields.setdefault(key.removesuffix("[]"), []).append(value)
        else:
            fields[key] = value
    fields["timestamp_granularities"] = granularities
    opts = validate(OpenAIOptions, fields)
    opts.check_granularities()
    settings = serving.settings
    if settings.strict_model_name and opts.model not in (serving.model_name, settings.model):
        raise NotFoundError(
            f"model {opts.model!r} is not served here; this server serves {serving.model_name!r}",
            details={"models": [serving.model_name]},
        )
    decode = dataclasses.replace(
        TranscriptionOptions().decode_options(settings),
        word_timestamps=settings.word_timestamps or "word" in opts.timestamp_granularities,
    )
    diarization = await _diarization(opts)
    path = await body.upload_to_file(upload)
    if path.stat().st_size == 0:
        raise EmptyAudioError("the uploaded file is empty (0 bytes of audio)")
    fmt = opts.response_format
    if opts.stream:
        return await _streamed(serving, path, decode, diarization, fmt)
    transcript = await serving.transcribe_path(path, decode, diarization)
    if fmt == "diarized_json":
        return JSONResponse(diarized_json(transcript).model_dump())
    if fmt == "json":
        return JSONResponse({"text": transcript.text})
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n", media_type=MEDIA_TYPES["text"])
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(render(transcript, fmt), media_type=MEDIA_TYPES[fmt])
    language = opts.language or settings.language
    body_out = verbose_json(transcript, language, list(opts.timestamp_granularities))
    return JSONResponse(body_out.model_dump(exclude_none=True))


async def _streamed(
    serving: AsrServing, path: Path, decode: DecodeOptions, diarization: DiarizationOptions | None, fmt: str
) -> Response:
    """``stream=true`` as OpenAI answers it: ``transcript.text.delta`` events as text is committed,
    then ``transcript.text.done`` with the text and usage; with ``diarized_json`` the
    ``transcript.text.segment`` events (diarization needs the whole recording: they all come at the
    end, after which the text follows as one delta)."""
    if fmt not in ("json", "text", "diarized_json"):
        raise InvalidInputError("stream=true works with response_format json, text or diarized_json")

    # The upload is gone once the handler returns: decode it (and diarize) before that.
    diarized = None if diarization is None else await serving.transcribe_path(path, decode, diarization)
    live = None if diarized is not None else await serving.open_file_stream(path, decode)

    async def events() -> AsyncIterator[tuple[str | None, object]]:
        if diarized is not None:
            transcript = diarized
            for segment in diarized_json(transcript).segments:
                yield None, {"type": "transcript.text.segment", **segment.model_dump()}
            if transcript.text:
                yield None, {"type": "transcript.text.delta", "delta": transcript.text}
        else:
            assert live is not None
            async for name, data in live:
                if name == "delta":
                    yield None, {"type": "transcript.text.delta", "delta": data}
                elif name == "done":
                    transcript = data
        yield (
            None,
            {
                "type": "transcript.text.done",
                "text": transcript.text,
                "usage": {"type": "duration", "seconds": math.ceil(transcript.duration)},
            },
        )

    return sse_response(events())


async def _diarization(opts: OpenAIOptions) -> DiarizationOptions | None:
    """Diarization for ``diarized_json`` (or ``diarize=true``), with the known speakers' clips decoded."""
    diarization = opts.openai_diarization()
    if diarization is None or not opts.known_speaker_names:
        return diarization
    references = await decode_references(opts.known_speaker_names, opts.known_speaker_references)
    return dataclasses.replace(diarization, references=references)


@router.get("/v1/models", response_model=ModelList, summary="The served model")
async def models(request: Request, serving: ServingDep) -> ModelList:
    card = ModelCard(
        id=serving.model_name,
        created=request.app.state.started_at,
        license=checkpoint_license(serving.settings.model),
    )
    return ModelList(data=[card])
