"""``POST /v1/transcriptions``: our own API. The audio comes as a multipart upload (``file``), as
a raw ``audio/*`` body, or as JSON with ``audio_url``; decode and output options come with it
(form fields, JSON fields or query parameters).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from omoai_core.errors import EmptyAudioError, InvalidInputError, UnsupportedMediaError
from omoai_core.schemas import Transcript
from omoai_formats import render
from starlette.datastructures import UploadFile

from omoai_asr.protocol import MEDIA_TYPES, TranscriptionOptions, UrlTranscriptionRequest
from omoai_asr.routes import ServingDep, validate

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


@router.post("/v1/transcriptions", openapi_extra=_OPENAPI, summary="Transcribe one recording")
async def transcriptions(request: Request, serving: ServingDep) -> Response:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=32)
        upload = form.get("file")
        fields = {k: v for k, v in form.multi_items() if k != "file"}
        if any(isinstance(v, UploadFile) for v in fields.values()):
            raise InvalidInputError("send the audio in the form field 'file'")
        if isinstance(upload, str):
            raise InvalidInputError("the form field 'file' must be a file upload")
        if upload is None:
            if "audio_url" not in fields:
                raise InvalidInputError("no audio: send a 'file' upload, or JSON with 'audio_url'")
            req = validate(UrlTranscriptionRequest, fields)
            return await _from_url(request, serving, req)
        if "audio_url" in fields:
            raise InvalidInputError("send either a 'file' upload or 'audio_url', not both")
        options = validate(TranscriptionOptions, fields)
        decode = options.decode_options(serving.settings)
        speakers = options.diarization_options()
        data = await upload.read()
        await upload.close()
        transcript = await serving.run(request, lambda: serving.transcribe_bytes(data, decode, speakers))
        return render_transcript(transcript, options.format)
    if ctype.startswith(_RAW_TYPES):
        options = validate(TranscriptionOptions, dict(request.query_params))
        decode = options.decode_options(serving.settings)
        speakers = options.diarization_options()
        data = await request.body()
        if not data:
            raise EmptyAudioError("the request body is empty (0 bytes of audio)")
        transcript = await serving.run(request, lambda: serving.transcribe_bytes(data, decode, speakers))
        return render_transcript(transcript, options.format)
    if ctype in ("application/json", ""):
        body = await request.body()
        try:
            payload = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"the body is not valid JSON: {e}") from None
        if not isinstance(payload, dict):
            raise InvalidInputError('expected a JSON object such as {"audio_url": "https://..."}')
        return await _from_url(request, serving, validate(UrlTranscriptionRequest, payload))
    raise UnsupportedMediaError(
        f"unsupported content type {ctype!r}; send multipart/form-data, audio/* or application/json"
    )


async def _from_url(request: Request, serving: ServingDep, req: UrlTranscriptionRequest) -> Response:
    decode = req.decode_options(serving.settings)
    speakers = req.diarization_options()
    transcript = await serving.run(request, lambda: serving.transcribe_url(req.audio_url, decode, speakers))
    return render_transcript(transcript, req.format)


def render_transcript(transcript: Transcript, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse(transcript.model_dump(exclude_none=True))
    return PlainTextResponse(render(transcript, fmt), media_type=MEDIA_TYPES[fmt])
