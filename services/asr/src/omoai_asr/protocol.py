"""Request and response models of the ASR HTTP API (pydantic at the boundary).

``TranscriptionOptions`` are the decode and output options of ``POST /v1/transcriptions``
(:mod:`omoai_core.contracts.asr`, which the operator speaks too), taken from JSON or from multipart
form fields; the ``OpenAI*`` models mirror the OpenAI audio API so the
official client parses our answers unchanged.
"""

from __future__ import annotations

from typing import Literal

from omoai_core.contracts import asr as contract
from omoai_core.errors import InvalidInputError
from omoai_core.schemas import Transcript
from pydantic import BaseModel, ConfigDict, Field

from omoai_asr.diarization.types import DiarizationOptions
from omoai_asr.geometry import DecodeOptions
from omoai_asr.settings import AsrSettings

OpenAIFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
Granularity = Literal["word", "segment"]

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SpeakerOptions(contract.SpeakerFields):
    """The contract's speaker switches (both APIs), checked into the engine's options."""

    def diarization_options(self, *, force: bool = False) -> DiarizationOptions | None:
        """None unless diarization is on; speaker counts without it, or inconsistent ones, are a 400."""
        counts = {
            "num_speakers": self.num_speakers,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }
        if not (self.diarize or force):
            given = [k for k, v in counts.items() if v is not None]
            if given:
                raise InvalidInputError(f"{', '.join(given)} requires diarize=true")
            return None
        try:
            return DiarizationOptions.from_counts(self.num_speakers, self.min_speakers, self.max_speakers)
        except ValueError as e:
            raise InvalidInputError(str(e)) from None


class TranscriptionOptions(contract.TranscriptionOptions, SpeakerOptions):
    """Decode, speaker and output options (the contract's fields); unset fields take the server's defaults."""

    stream: bool = Field(
        default=False,
        description="Answer text/event-stream: progress and segment events as windows are decoded, then done.",
    )

    def decode_options(self, settings: AsrSettings) -> DecodeOptions:
        """The engine's options; combinations the model cannot run raise ``InvalidInputError`` (400)."""
        return DecodeOptions(
            chunk_size=self.chunk_size if self.chunk_size is not None else settings.chunk_size,
            left_context=self.left_context if self.left_context is not None else settings.left_context,
            right_context=self.right_context if self.right_context is not None else settings.right_context,
            total_batch_duration=(
                self.total_batch_duration if self.total_batch_duration is not None else settings.total_batch_duration
            ),
            include_frames=self.include_frames,
            word_timestamps=self.word_timestamps if self.word_timestamps is not None else settings.word_timestamps,
        )


class UrlTranscriptionRequest(contract.UrlTranscriptionRequest, TranscriptionOptions):
    """``POST /v1/transcriptions`` with a JSON body."""


class OpenAIOptions(SpeakerOptions):
    """The form fields of ``POST /v1/audio/transcriptions`` besides ``file``."""

    model: str = Field(min_length=1, max_length=256)
    language: str | None = Field(default=None, max_length=32)
    prompt: str | None = Field(default=None, max_length=100_000, description="Accepted and ignored (CTC model).")
    response_format: OpenAIFormat = "json"
    temperature: float = Field(default=0.0, ge=0, le=1, description="Accepted and ignored (greedy CTC).")
    timestamp_granularities: list[Granularity] = Field(default_factory=list)
    stream: bool = Field(
        default=False,
        description="Server-sent events: transcript.text.delta as windows are decoded, then transcript.text.done.",
    )
    known_speaker_names: list[str] = Field(
        default_factory=list, max_length=8, description="Names of the voices in known_speaker_references[]."
    )
    known_speaker_references: list[str] = Field(
        default_factory=list, max_length=8, description="Audio data URLs (2-10 s of each known speaker)."
    )

    def check_granularities(self) -> None:
        if self.timestamp_granularities and self.response_format != "verbose_json":
            raise InvalidInputError("timestamp_granularities requires response_format=verbose_json")

    def openai_diarization(self) -> DiarizationOptions | None:
        """``diarized_json`` (or ``diarize=true``) turns diarization on; known speakers need both lists, paired."""
        if len(self.known_speaker_names) != len(self.known_speaker_references):
            raise InvalidInputError(
                f"known_speaker_names[] ({len(self.known_speaker_names)}) and known_speaker_references[] "
                f"({len(self.known_speaker_references)}) must pair up one to one"
            )
        names = [n.strip() for n in self.known_speaker_names]
        if any(not n or len(n) > 64 for n in names) or len(set(names)) != len(names):
            raise InvalidInputError("known_speaker_names[] must be distinct, non-empty names of at most 64 characters")
        force = self.response_format == "diarized_json" or bool(names)
        return self.diarization_options(force=force)


# -- responses -----------------------------------------------------------------------------------


class OpenAITranscription(BaseModel):
    text: str


class OpenAIWord(BaseModel):
    word: str
    start: float
    end: float


class OpenAISegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class OpenAIVerboseTranscription(BaseModel):
    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[OpenAISegment] | None = None
    words: list[OpenAIWord] | None = None


class OpenAIDiarizedSegment(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str


class OpenAIDiarizedTranscription(BaseModel):
    """OpenAI's ``diarized_json`` (the shape of ``gpt-4o-transcribe-diarize``)."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[OpenAIDiarizedSegment]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "omoai"
    license: str | None = None  # of a known published checkpoint (omoai_asr.checkpoints); None if unknown


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def verbose_json(transcript: Transcript, language: str, granularities: list[Granularity]) -> OpenAIVerboseTranscription:
    """OpenAI's verbose_json: segments unless only words were asked for; words when asked for."""
    want_segments = not granularities or "segment" in granularities
    segments = None
    if want_segments:
        segments = [
            OpenAISegment(
                id=i,
                seek=0,
                start=s.start,
                end=s.end,
                text=s.text,
                tokens=[],
                temperature=0.0,
                avg_logprob=0.0,
                compression_ratio=1.0,
                no_speech_prob=0.0,
            )
            for i, s in enumerate(transcript.segments)
        ]
    words = None
    if "word" in granularities:
        words = [OpenAIWord(word=w.word, start=w.start, end=w.end) for s in transcript.segments for w in s.words]
    return OpenAIVerboseTranscription(
        language=language, duration=transcript.duration, text=transcript.text, segments=segments, words=words
    )


def diarized_json(transcript: Transcript) -> OpenAIDiarizedTranscription:
    """Segments with their speaker; labels are S1, S2... (or the known speakers' names)."""
    return OpenAIDiarizedTranscription(
        duration=transcript.duration,
        text=transcript.text,
        segments=[
            OpenAIDiarizedSegment(id=f"seg_{i}", start=s.start, end=s.end, text=s.text, speaker=s.speaker or "S1")
            for i, s in enumerate(transcript.segments)
        ],
    )
