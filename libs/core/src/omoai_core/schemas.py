"""Wire schemas shared by the services and the operator (pydantic at every boundary).

Times are seconds from the start of the recording. These are the shapes the ASR service returns,
the LLM service takes and returns, and the operator stores.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Word(_Model):
    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    speaker: str | None = Field(default=None, max_length=256, description="Speaker label (diarization).")


class Segment(_Model):
    text: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    words: list[Word] = Field(default_factory=list)
    speaker: str | None = Field(
        default=None, max_length=256, description="Speaker label (diarization): S1, S2... or a known speaker's name."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        if self.end < self.start:
            raise ValueError(f"segment end {self.end} is before its start {self.start}")
        return self


class Transcript(_Model):
    """What the ASR engine produces for one recording."""

    text: str
    segments: list[Segment]
    duration: float = Field(ge=0, description="Audio duration in seconds.")
    model: str
    language: str | None = None
    frames: list[int] | None = Field(default=None, description="Argmax token id of every encoder frame.")
    speakers: list[str] | None = Field(
        default=None, description="Speakers found by diarization, in order of first appearance (absent without it)."
    )


class Summary(_Model):
    title: str
    abstract: str
    bullets: list[str] = Field(default_factory=list)


class Topic(_Model):
    title: str
    start: float = Field(ge=0)
    end: float | None = Field(default=None, ge=0)
    summary: str | None = None


class Quality(_Model):
    """Edit distance between the words that went into post-processing and those that came out."""

    wer: float = Field(ge=0)
    cer: float = Field(ge=0)
    words_in: int = Field(ge=0)
    words_out: int = Field(ge=0)
    fallback_segments: int = Field(default=0, ge=0, description="Segments where the model output was rejected.")


class Document(_Model):
    """A transcript with optional post-processing: the unit the output writers render."""

    transcript: Transcript
    summary: Summary | None = None
    topics: list[Topic] | None = None
    quality: Quality | None = None
