"""``POST /v1/transcriptions``: our own API. The audio comes as a multipart upload (``file``), as
a raw ``audio/*`` body, or as JSON with ``audio_url``; decode and output options come with it
(form fields, JSON fields or query parameters).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from omoai_core.errors import EmptyAudioError, InvalidInputError, UnsupportedMediaError
from omoai_core.schemas import Transcript
from omoai_formats import render
from omoai_http.jsonbody import parse_json
from omoai_http.lifecycle import Body
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from omoai_asr.protocol import MEDIA_TYPES, TranscriptionOptions, UrlTranscriptionRequest
from omoai_asr.routes import ServingDep, sse_response, validate
from omoai_asr.serving import AsrServing, FileStreamEvent

router = APIRouter(tags=["transcription"])

_OPTION_PROPS: dict[str, Any] = TranscriptionOptions.model_json_schema()["properties"]
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}, **_OPTION_PROPS},
                }
            },
            "application/json": {"schema": UrlTranscriptionRequest.model_json_schema()},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "The transcript (json) or its txt/srt/vtt/md rendering.",
            "content": {"application/json": {"schema": Transcript.model_json_schema()}},
        }
    },
}
_RAW_TYPES = ("audio/", "video/", "application/octet-stream")
#: A JSON request carries a URL and options, never audio: a larger JSON body is refused (413).
MAX_JSON_BYTES = 1024 * 1024


@router.post("/v1/transcriptions", openapi_extra=_OPENAPI, summary="Transcribe one recording")
async def transcriptions(request: Request, serving: ServingDep) -> Response:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    streamq = _query_stream(request)
    if ctype == "multipart/form-data":
        return await serving.run(request, lambda body: _from_form(body, serving, streamq))
    if ctype.startswith(_RAW_TYPES):
        options = validate(TranscriptionOptions, dict(request.query_params))  # before admission: no body read
        return await serving.run(request, lambda body: _from_raw(body, serving, options))
    if ctype in ("application/json", ""):
        return await serving.run(request, lambda body: _from_json(body, serving, streamq))
    raise UnsupportedMediaError(
        f"unsupported content type {ctype!r}; send multipart/form-data, audio/* or application/json"
    )


def _query_stream(request: Request) -> bool:
    """``?stream=true`` asks for the streamed answer whatever the body (the operator asks this way:
    a replica that predates streaming ignores a query parameter, where it would refuse a field). As
    a query parameter it is a preference: a request that cannot stream (diarization, a text format)
    gets the plain answer instead of the 400 the ``stream`` field gets."""
    return request.query_params.get("stream", "").lower() in ("true", "1")


async def _from_form(body: Body, serving: AsrServing, streamq: bool = False) -> Response:
    form = await body.form(max_files=1, max_fields=32)
    upload = form.get("file")
    fields = {k: v for k, v in form.multi_items() if k != "file"}
    if any(isinstance(v, UploadFile) for v in fields.values()):
        raise InvalidInputError("send the audio in the form field 'file'")
    if isinstance(upload, str):
        raise InvalidInputError("the form field 'file' must be a file upload")
    if upload is None:
        if "audio_url" not in fields:
            raise InvalidInputError("no audio: send a 'file' upload, or JSON with 'audio_url'")
        return await _from_url(serving, validate(UrlTranscriptionRequest, fields), streamq)
    if "audio_url" in fields:
        raise InvalidInputError("send either a 'file' upload or 'audio_url', not both")
    options = validate(TranscriptionOptions, fields)
    if streamq and _streamable(options):
        options = options.model_copy(update={"stream": True})
    decode = options.decode_options(serving.settings)
    speakers = options.diarization_options()
    path = await body.upload_to_file(upload)
    if path.stat().st_size == 0:
        raise EmptyAudioError("the uploaded file is empty (0 bytes of audio)")
    if options.stream:
        return await _streamed(serving, path, options)
    transcript = await serving.transcribe_path(path, decode, speakers)
    return render_transcript(transcript, options.format)


async def _from_raw(body: Body, serving: AsrServing, options: TranscriptionOptions) -> Response:
    decode = options.decode_options(serving.settings)
    speakers = options.diarization_options()
    path = await body.to_file()
    if path.stat().st_size == 0:
        raise EmptyAudioError("the request body is empty (0 bytes of audio)")
    if options.stream:
        return await _streamed(serving, path, options)
    transcript = await serving.transcribe_path(path, decode, speakers)
    return render_transcript(transcript, options.format)


async def _from_json(body: Body, serving: AsrServing, streamq: bool = False) -> Response:
    raw = await body.read(MAX_JSON_BYTES)
    payload = parse_json(raw) if raw else None
    if not isinstance(payload, dict):
        raise InvalidInputError('expected a JSON object such as {"audio_url": "https://..."}')
    return await _from_url(serving, validate(UrlTranscriptionRequest, payload), streamq)


async def _from_url(serving: AsrServing, req: UrlTranscriptionRequest, streamq: bool = False) -> Response:
    decode = req.decode_options(serving.settings)
    speakers = req.diarization_options()
    if req.stream or (streamq and _streamable(req)):
        _check_streamable(req)
        return _sse_response(await serving.open_url_stream(req.audio_url, decode))
    transcript = await serving.transcribe_url(req.audio_url, decode, speakers)
    return render_transcript(transcript, req.format)


def render_transcript(transcript: Transcript, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse(transcript.model_dump(exclude_none=True))
    return PlainTextResponse(render(transcript, fmt), media_type=MEDIA_TYPES[fmt])


async def _streamed(serving: AsrServing, path: Path, options: TranscriptionOptions) -> Response:
    """``stream=true``: server-sent events ``progress``, ``segment``, then ``done`` (or ``error``).

    ``done`` carries the transcript JSON exactly as the non-streamed answer; an error after the
    stream started arrives as ``event: error`` with the usual error body. Diarization and formats
    other than json are not streamed (400).
    """
    _check_streamable(options)
    return _sse_response(await serving.open_file_stream(path, options.decode_options(serving.settings)))


def _streamable(options: TranscriptionOptions) -> bool:
    return options.format == "json" and options.diarization_options() is None


def _check_streamable(options: TranscriptionOptions) -> None:
    if not _streamable(options):
        raise InvalidInputError("stream=true answers JSON events without diarization; drop format or diarization")


def _sse_response(events: AsyncIterator[FileStreamEvent]) -> Response:
    async def named() -> AsyncIterator[tuple[str | None, object]]:
        async for name, data in events:
            if name != "delta":  # the text arrives with the segments
                yield name, data.model_dump(exclude_none=True) if isinstance(data, BaseModel) else data

    return sse_response(named())
