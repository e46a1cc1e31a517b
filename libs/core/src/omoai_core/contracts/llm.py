"""The LLM service's contract: the request and response models of ``POST /v1/punctuate``,
``/v1/summarize``, ``/v1/topics`` and ``/v1/postprocess``.

Segments use the shared :class:`~omoai_core.schemas.Segment` shape (``text``, ``start``, ``end`` and
optional ``words``), so an ASR transcript's segments can be posted as they are. Each response is a
``*Result`` (what a caller came for: the segments, the summary, the topics) plus the service's
account of the work (alignment, chunks, token usage); a client reads the ``*Result`` part, which
ignores fields it does not know so that a newer service can add some.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from omoai_core.schemas import Quality, Segment, Summary, Topic

PUNCTUATE_PATH = "/v1/punctuate"
SUMMARIZE_PATH = "/v1/summarize"
TOPICS_PATH = "/v1/topics"
POSTPROCESS_PATH = "/v1/postprocess"

Task = Literal["punctuate", "summarize", "topics"]
ALL_TASKS: tuple[Task, ...] = ("punctuate", "summarize", "topics")

#: How punctuation is restored: ``rewrite`` (the LLM writes the text again, aligned back onto the
#: words), ``edits`` (the LLM lists only marks and casing per numbered word: a fraction of the
#: output tokens) or ``tagger`` (a token-classification model, no LLM). Every method keeps every word.
PunctuationMethod = Literal["rewrite", "edits", "tagger"]
PUNCTUATION_METHODS: tuple[PunctuationMethod, ...] = ("rewrite", "edits", "tagger")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _Request(_Model):
    language: str | None = Field(default=None, description="vi or en (or a tag like vi-VN); unset = server default.")


class PunctuateRequest(_Request):
    segments: list[Segment]
    policy: Literal["strict", "lenient"] | None = Field(default=None, description="Alignment policy; unset = server's.")
    method: PunctuationMethod | None = Field(default=None, description="rewrite, edits or tagger; unset = server's.")


class SummarizeRequest(_Request):
    segments: list[Segment] | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SummarizeRequest:
        if (self.segments is None) == (self.text is None):
            raise ValueError("give exactly one of segments or text")
        return self


class TopicsRequest(_Request):
    segments: list[Segment]
    max_topics: int | None = Field(default=None, ge=1, le=200)


class PostprocessRequest(_Request):
    segments: list[Segment]
    tasks: list[Task] = Field(default_factory=lambda: list(ALL_TASKS), min_length=1)
    policy: Literal["strict", "lenient"] | None = None
    method: PunctuationMethod | None = Field(default=None, description="rewrite, edits or tagger; unset = server's.")
    max_topics: int | None = Field(default=None, ge=1, le=200)


class Usage(_Model):
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    truncated_calls: int = Field(default=0, description="Model answers cut off by the token limit.")


class AlignmentReport(_Model):
    """What the model returned compared with the input, and what the alignment did about it."""

    policy: Literal["strict", "lenient"]
    model_wer: float = Field(description="Word error rate of the model's raw answer against the input words.")
    model_cer: float = Field(description="Character error rate of the model's raw answer.")
    matched: int = Field(description="Input words found in the answer (punctuation and case taken).")
    replaced: int = Field(description="Input words the model rewrote; the input word was kept.")
    spelling_fixes: int = Field(description="Lenient policy: words where the model's spelling was taken.")
    restored: int = Field(description="Input words the model dropped; put back.")
    invented: int = Field(description="Words the model added; removed.")


class PunctuateResult(_Result):
    segments: list[Segment]
    quality: Quality | None = None


class PunctuateResponse(PunctuateResult):
    model_config = _Model.model_config
    method: PunctuationMethod = "rewrite"
    text: str
    quality: Quality
    alignment: AlignmentReport
    chunks: int
    usage: Usage


class SummarizeResult(_Result):
    summary: Summary


class SummarizeResponse(SummarizeResult):
    model_config = _Model.model_config
    strategy: Literal["single", "map_reduce"]
    chunks: int
    structured: bool = Field(description="False when the summary was recovered from a non-JSON answer.")
    warnings: list[str] = Field(default_factory=list)
    usage: Usage


class TopicsResult(_Result):
    topics: list[Topic]


class TopicsResponse(TopicsResult):
    model_config = _Model.model_config
    chunks: int
    warnings: list[str] = Field(default_factory=list)
    usage: Usage


class ModelInfo(_Model):
    id: str
    kind: Literal["llm", "tagger"]
    license: str | None = Field(default=None, description="From the model card, or known for published taggers.")
    resident: bool = Field(description="Loaded now (a single-resident service switches between its models).")


class ModelsResponse(_Model):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class PostprocessResponse(_Model):
    segments: list[Segment]
    text: str
    quality: Quality | None = None
    alignment: AlignmentReport | None = None
    summary: Summary | None = None
    topics: list[Topic] | None = None
    warnings: list[str] = Field(default_factory=list)
    usage: dict[str, Usage] = Field(default_factory=dict)
