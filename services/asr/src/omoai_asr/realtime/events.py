"""The realtime protocol's events: one pydantic model per event, OpenAI's realtime transcription
shapes (``openai.types.realtime`` for the current ``session.update``, ``openai.types.beta.realtime``
for the older ``transcription_session.update``) plus our documented extensions.

Client events are one discriminated union on ``type`` (:data:`ClientEvent`): an unknown type or a
malformed event is one :class:`pydantic.ValidationError`, turned into one ``error`` event by the
session. Fields that OpenAI defines and we do not use are accepted and ignored (``extra="ignore"``)
so existing clients work unmodified; the effective configuration in ``session.updated`` says what
applies.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: Our extension values of ``session.include``.
INCLUDE_PARTIALS = "omoai.partials"  # revisable partial text events (never mixed into deltas)
INCLUDE_WORDS = "omoai.word_timestamps"  # word times in each completed item's ``omoai`` field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


# -- session configuration (current shape) --------------------------------------------------------


class PcmFormat(_Lenient):
    type: Literal["audio/pcm"] = "audio/pcm"
    #: OpenAI's only rate is 24000; 16000 is our extension (no resampling at all).
    rate: Literal[24000, 16000] = 24000


class PcmuFormat(_Lenient):
    type: Literal["audio/pcmu"]


class PcmaFormat(_Lenient):
    type: Literal["audio/pcma"]


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]


class TranscriptionConfig(_Lenient):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class ServerVad(_Lenient):
    type: Literal["server_vad"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(default=None, ge=100, le=10000)


class SemanticVad(_Lenient):
    type: Literal["semantic_vad"]


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class NoiseReduction(_Lenient):
    type: str | None = None


class AudioInput(_Lenient):
    format: AudioFormat | None = None
    transcription: TranscriptionConfig | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: NoiseReduction | None = None


class AudioConfig(_Lenient):
    input: AudioInput | None = None


class DecodeOverrides(_Lenient):
    """Extension: the session's decode settings (as ``POST /v1/transcriptions`` takes them)."""

    chunk_size: int | None = Field(default=None, ge=1)
    left_context: int | None = Field(default=None, ge=0)
    right_context: int | None = Field(default=None, ge=0)
    total_batch_duration: float | None = Field(default=None, gt=0)


class SessionExtension(_Lenient):
    decode: DecodeOverrides | None = None


class TranscriptionSession(_Lenient):
    type: Literal["transcription"]
    audio: AudioConfig | None = None
    include: list[str] | None = None
    omoai: SessionExtension | None = None


class RealtimeSessionRequest(_Lenient):
    """A conversation session (``type: "realtime"``): not served here; recognised to refuse clearly."""

    type: Literal["realtime"]


# -- session configuration (the older transcription_session shape) --------------------------------


class LegacyTurnDetection(_Lenient):
    type: Literal["server_vad", "semantic_vad"] | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(default=None, ge=100, le=10000)


class LegacySession(_Lenient):
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: TranscriptionConfig | None = None
    turn_detection: LegacyTurnDetection | None = None
    input_audio_noise_reduction: NoiseReduction | None = None
    include: list[str] | None = None
    omoai: SessionExtension | None = None


# -- client events --------------------------------------------------------------------------------


class _ClientEvent(_Lenient):
    event_id: str | None = Field(default=None, max_length=512)


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: Annotated[TranscriptionSession | RealtimeSessionRequest, Field(discriminator="type")]


class TranscriptionSessionUpdate(_ClientEvent):
    type: Literal["transcription_session.update"]
    session: LegacySession


class InputAudioBufferAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


ClientEvent = Annotated[
    SessionUpdate
    | TranscriptionSessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear,
    Field(discriminator="type"),
]
CLIENT_EVENT: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
CLIENT_EVENT_TYPES = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)


# -- server events --------------------------------------------------------------------------------

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """Ids unique within this process: ``event_…``, ``item_…``, ``sess_…``."""
    return f"{prefix}_{next(_ids):012d}"


class _ServerEvent(BaseModel):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class SessionCreated(_ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: dict[str, Any]


class SessionUpdated(_ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: dict[str, Any]


class TranscriptionSessionUpdated(_ServerEvent):
    type: Literal["transcription_session.updated"] = "transcription_session.updated"
    session: dict[str, Any]


class SpeechStarted(_ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(_ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class Committed(_ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class Cleared(_ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class TranscriptionDelta(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionCompleted(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: DurationUsage
    #: Extension: the item's place in the session's audio clock and its segments (and words, with
    #: ``include: ["omoai.word_timestamps"]``), times in seconds since the session's first sample.
    omoai: dict[str, Any]


class FailureDetail(BaseModel):
    type: str = "server_error"
    code: str
    message: str


class TranscriptionFailed(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: FailureDetail


class PartialTranscript(_ServerEvent):
    """Extension (opt-in with ``include: ["omoai.partials"]``): the whole revisable text of the item
    being spoken so far; each one replaces the previous. Never part of the append-only deltas."""

    type: Literal["omoai.input_audio_transcription.partial"] = "omoai.input_audio_transcription.partial"
    item_id: str
    text: str
    audio_end_ms: int


class ErrorDetail(BaseModel):
    type: Literal["invalid_request_error", "server_error"] = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None


class ErrorEvent(_ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | TranscriptionSessionUpdated
    | SpeechStarted
    | SpeechStopped
    | Committed
    | Cleared
    | TranscriptionDelta
    | TranscriptionCompleted
    | TranscriptionFailed
    | PartialTranscript
    | ErrorEvent
)
