"""The ASR service's transcription contract: ``POST /v1/transcriptions`` takes the decode and
output options below (as a JSON body with ``audio_url``, or as multipart form fields next to an
uploaded ``file``) and answers a :class:`~omoai_core.schemas.Transcript` for ``format=json``.

:data:`DECODE_DEFAULTS` are the decode options a request that sets none gets: the ASR service's
settings default to them, and so do the engine's ``DecodeOptions`` and a TranscriptionJob's
``spec.asr``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from omoai_core.contracts import OutputFormat

TRANSCRIPTIONS_PATH = "/v1/transcriptions"


@dataclass(frozen=True)
class DecodeDefaults:
    """Chunk and context sizes in encoder frames (80 ms each); the window budget in seconds."""

    chunk_size: int = 64
    left_context: int = 128
    right_context: int = 128
    total_batch_duration: float = 1800.0
    word_timestamps: bool = True


DECODE_DEFAULTS = DecodeDefaults()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


#: The most speakers a diarization request may ask for or bound its estimate by.
MAX_SPEAKERS = 20


class SpeakerFields(_Strict):
    """Speaker diarization switches; ``num_speakers`` fixes the count, min/max bound its estimate."""

    diarize: bool = Field(default=False, description="Label every segment and word with its speaker (S1, S2...).")
    num_speakers: int | None = Field(default=None, ge=1, le=MAX_SPEAKERS, description="Speakers in the recording.")
    min_speakers: int | None = Field(default=None, ge=1, le=MAX_SPEAKERS, description="Fewest speakers to find.")
    max_speakers: int | None = Field(default=None, ge=1, le=MAX_SPEAKERS, description="Most speakers to find.")


class TranscriptionOptions(SpeakerFields):
    """Decode, speaker and output options; unset fields take the server's defaults."""

    chunk_size: int | None = Field(default=None, ge=1, le=4999, description="Encoder frames per chunk (80 ms each).")
    left_context: int | None = Field(default=None, ge=0, le=4999, description="Left context, encoder frames.")
    right_context: int | None = Field(default=None, ge=0, le=4999, description="Right context, encoder frames.")
    total_batch_duration: float | None = Field(
        default=None, gt=0, le=14400, description="Seconds of audio per forward pass (long-form window budget)."
    )
    word_timestamps: bool | None = Field(default=None, description="Word timestamps in segments.")
    include_frames: bool = Field(default=False, description="Add the per-frame argmax token ids (json only).")
    format: OutputFormat = Field(default="json", description="Response format.")

    def form_fields(self) -> dict[str, str]:
        """The options a caller set, as multipart form fields (booleans as ``true``/``false``)."""
        fields = self.model_dump(mode="json", exclude_unset=True)
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}


class UrlTranscriptionRequest(TranscriptionOptions):
    """``POST /v1/transcriptions`` with a JSON body."""

    audio_url: str = Field(
        min_length=1,
        max_length=8192,
        description="http(s)://, s3://bucket/key or file://path under the server's file root.",
    )
