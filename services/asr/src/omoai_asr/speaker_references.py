"""Known speakers for diarization: ``known_speaker_references[]`` are short clips sent as data URLs
(``data:audio/wav;base64,...``, any format ffmpeg reads), each naming the speaker of
``known_speaker_names[]`` at the same position. They are decoded here and embedded by the
diarization backend, which names the clusters they match (``DiarizationOptions.references``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence

import numpy as np
from omoai_audio import decode_audio
from omoai_core.errors import AudioError, InvalidInputError

#: Longest reference clip accepted (OpenAI asks for 2-10 s).
MAX_REFERENCE_S = 30.0
MIN_REFERENCE_S = 0.5


def data_url_bytes(url: str, *, index: int) -> bytes:
    """The payload of a ``data:[<type>][;base64],<data>`` URL (base64 only: audio is binary)."""
    where = f"known_speaker_references[{index}]"
    if not url.startswith("data:") or "," not in url:
        raise InvalidInputError(f"{where} must be a data URL such as data:audio/wav;base64,...")
    header, payload = url[5:].split(",", 1)
    if not header.endswith(";base64"):
        raise InvalidInputError(f"{where} must be base64-encoded (data:audio/...;base64,...)")
    mime = header.removesuffix(";base64")
    if mime and not mime.startswith(("audio/", "video/", "application/octet-stream")):
        raise InvalidInputError(f"{where} has media type {mime!r}; expected audio/*")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{where} is not valid base64") from None


async def decode_references(names: Sequence[str], urls: Sequence[str]) -> dict[str, np.ndarray]:
    """name -> (N,) int16 16 kHz samples; any bad clip is a 400 naming it."""
    out: dict[str, np.ndarray] = {}
    for i, (name, url) in enumerate(zip(names, urls, strict=True)):
        data = data_url_bytes(url, index=i)
        try:
            audio = await asyncio.to_thread(decode_audio, data, max_duration_s=MAX_REFERENCE_S)
        except AudioError as e:
            raise InvalidInputError(f"known_speaker_references[{i}] ({name}): {e.message}") from None
        if audio.duration < MIN_REFERENCE_S:
            raise InvalidInputError(
                f"known_speaker_references[{i}] ({name}) is {audio.duration:.2f} s; at least {MIN_REFERENCE_S} s needed"
            )
        out[name.strip()] = audio.samples
    return out
