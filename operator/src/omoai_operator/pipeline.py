"""The stages of one job (ASR, punctuation, summary, topics, write): the :data:`STAGES` table says
what each is (the service whose capacity it needs, the phase it runs in, the artifact it stages, when
a spec wants it, how to run it), and :class:`Pipeline` runs them.

Every stage is idempotent: its result is staged in the job's store before the status says it is
done, and a stage whose result is already staged is not redone (a restarted operator never
transcribes the same recording twice).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from omoai_core.contracts.asr import TranscriptionOptions
from omoai_core.schemas import Document, Quality, Segment, Summary, Topic, Transcript
from omoai_formats import render
from pydantic import TypeAdapter

from omoai_operator.clients import AsrClient, LlmClient, ProgressCallback
from omoai_operator.failures import StageError
from omoai_operator.placement import Grant
from omoai_operator.spec import JobSpec
from omoai_operator.status import Phase
from omoai_operator.storage import Store

log = logging.getLogger(__name__)

_TOPICS = TypeAdapter(list[Topic])

#: The staged results, by stage (names inside the job's staging area).
ASR_ARTIFACT = "asr.json"
PUNCTUATE_ARTIFACT = "punctuate.json"
SUMMARIZE_ARTIFACT = "summarize.json"
TOPICS_ARTIFACT = "topics.json"


class Service(StrEnum):
    """A service whose capacity the operator shares out (see :class:`~omoai_operator.queue.CapacityQueue`)."""

    ASR = "asr"
    LLM = "llm"


@dataclass(frozen=True)
class JobContext:
    """What the stages need to know about one job."""

    key: str  # namespace/name (or the file name for ``omoai run``)
    name: str
    uid: str
    spec: JobSpec
    store: Store
    audio_url: str
    audio_path: Path | None = None  # a local file to upload instead (``omoai run``)
    on_progress: ProgressCallback | None = None  # audio seconds decoded, while transcribing

    @property
    def stem(self) -> str:
        return self.spec.output.stem or self.name


@dataclass(frozen=True)
class Written:
    """Where the outputs went."""

    location: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class StageOutcome:
    reused: bool = False  # found already done in storage
    audio_duration_s: float | None = None  # ASR: the recording's length
    written: Written | None = None  # write: the committed outputs
    summary: str | None = None  # write: one line for ``status.summary``
    summary_title: str | None = None  # write: the summary's title (notifications carry it)
    duration_s: float = 0.0


@dataclass(frozen=True)
class Stage:
    name: str
    service: Service | None  # whose capacity slot it needs (``None``: it only touches storage)
    phase: Phase  # the job's phase while it runs
    artifact: str | None  # its staged result (``None``: its result is the committed outputs)
    wanted: Callable[[JobSpec], bool]  # whether a spec asks for it
    run: Callable[[Pipeline, JobContext, Grant | None], Awaitable[StageOutcome]]


class Pipeline:
    def __init__(self, asr: AsrClient, llm: LlmClient) -> None:
        self.asr = asr
        self.llm = llm

    async def run_stage(self, stage: Stage, ctx: JobContext, grant: Grant | None = None) -> StageOutcome:
        """Run ``stage``; its service calls go where ``grant`` (its slot of the service) placed it."""
        t0 = time.monotonic()
        outcome = await stage.run(self, ctx, grant)
        return replace(outcome, duration_s=time.monotonic() - t0)

    async def is_staged(self, stage: Stage, ctx: JobContext) -> bool:
        """Whether the stage's result is already stored (a restart after the work finished)."""
        return stage.artifact is not None and await ctx.store.get(stage.artifact) is not None

    # -- stages ----------------------------------------------------------------------------------
    async def transcribe(self, ctx: JobContext, grant: Grant | None = None) -> StageOutcome:
        staged = await self._load_transcript(ctx)
        reused = staged is not None
        if staged is None:
            a = ctx.spec.asr
            options = TranscriptionOptions(
                chunk_size=a.chunk_size,
                left_context=a.left_context,
                right_context=a.right_context,
                total_batch_duration=a.total_batch_duration,
                word_timestamps=a.word_timestamps,
                **ctx.spec.diarization.asr_fields(),  # speakers on segments and words when enabled
            )
            if ctx.audio_path is not None:
                staged = await self.asr.transcribe_file(ctx.audio_path, options, at=grant, on_progress=ctx.on_progress)
            else:
                staged = await self.asr.transcribe(ctx.audio_url, options, at=grant, on_progress=ctx.on_progress)
            if staged.duration <= 0:
                raise StageError.permanent("InvalidAudio", "the ASR service found no audio in the recording")
            await ctx.store.put(ASR_ARTIFACT, staged.model_dump_json().encode())
        return StageOutcome(reused=reused, audio_duration_s=staged.duration)

    async def punctuate(self, ctx: JobContext, grant: Grant | None = None) -> StageOutcome:
        if await ctx.store.get(PUNCTUATE_ARTIFACT) is not None:
            return StageOutcome(reused=True)
        transcript = await self._transcript(ctx)
        segments, quality = await self.llm.punctuate(
            transcript.segments, ctx.spec.language, ctx.spec.postprocess.punctuation_method, at=grant
        )
        payload = {
            "segments": [s.model_dump() for s in segments],
            "quality": quality.model_dump() if quality else None,
        }
        await ctx.store.put(PUNCTUATE_ARTIFACT, json.dumps(payload, ensure_ascii=False).encode())
        return StageOutcome()

    async def summarize(self, ctx: JobContext, grant: Grant | None = None) -> StageOutcome:
        if await ctx.store.get(SUMMARIZE_ARTIFACT) is not None:
            return StageOutcome(reused=True)
        segments = await self._segments(ctx)
        summary = await self.llm.summarize(segments, ctx.spec.language, ctx.spec.postprocess.summary, at=grant)
        await ctx.store.put(SUMMARIZE_ARTIFACT, summary.model_dump_json().encode())
        return StageOutcome()

    async def topics(self, ctx: JobContext, grant: Grant | None = None) -> StageOutcome:
        if await ctx.store.get(TOPICS_ARTIFACT) is not None:
            return StageOutcome(reused=True)
        segments = await self._segments(ctx)
        topics = await self.llm.topics(segments, ctx.spec.language, at=grant)
        await ctx.store.put(TOPICS_ARTIFACT, _TOPICS.dump_json(topics))
        return StageOutcome()

    async def write(self, ctx: JobContext, grant: Grant | None = None) -> StageOutcome:
        doc = await self.document(ctx)
        outputs = {f"{ctx.stem}.{fmt}": render(doc, fmt).encode() for fmt in ctx.spec.output.formats}
        files = await ctx.store.commit(outputs)
        summary = None
        if doc.summary is not None:
            summary = f"{doc.summary.title}: {doc.summary.abstract}".strip()
        elif doc.transcript.text:
            summary = doc.transcript.text[:200]
        title = doc.summary.title if doc.summary is not None else None
        return StageOutcome(written=Written(ctx.store.location, tuple(files)), summary=summary, summary_title=title)

    # -- assembling ------------------------------------------------------------------------------
    async def document(self, ctx: JobContext) -> Document:
        transcript = await self._transcript(ctx)
        quality: Quality | None = None
        raw = await ctx.store.get(PUNCTUATE_ARTIFACT)
        if raw is not None:
            data = json.loads(raw)
            transcript = _with_segments(transcript, [Segment.model_validate(s) for s in data["segments"]])
            quality = Quality.model_validate(data["quality"]) if data.get("quality") else None
        raw = await ctx.store.get(SUMMARIZE_ARTIFACT)
        summary = Summary.model_validate_json(raw) if raw is not None else None
        raw = await ctx.store.get(TOPICS_ARTIFACT)
        topics = _TOPICS.validate_json(raw) if raw is not None else None
        return Document(transcript=transcript, summary=summary, topics=topics, quality=quality)

    async def _load_transcript(self, ctx: JobContext) -> Transcript | None:
        raw = await ctx.store.get(ASR_ARTIFACT)
        return Transcript.model_validate_json(raw) if raw is not None else None

    async def _transcript(self, ctx: JobContext) -> Transcript:
        t = await self._load_transcript(ctx)
        if t is None:
            # The status said ASR was done but its result is gone (staging wiped): start over.
            raise StageError.temporary(
                "TranscriptMissing", "the stored transcript disappeared; transcribing again", redo=ASR.name
            )
        return t

    async def _segments(self, ctx: JobContext) -> list[Segment]:
        raw = await ctx.store.get(PUNCTUATE_ARTIFACT)
        if raw is not None:
            return [Segment.model_validate(s) for s in json.loads(raw)["segments"]]
        return (await self._transcript(ctx)).segments


def _with_segments(t: Transcript, segments: list[Segment]) -> Transcript:
    if len(segments) == len(t.segments):
        # Punctuation keeps segment times; keep the word timings (and speakers) the ASR gave.
        segments = [
            s
            if s.words and s.speaker == o.speaker
            else s.model_copy(update={"words": s.words or o.words, "speaker": o.speaker})
            for s, o in zip(segments, t.segments, strict=True)
        ]
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    return t.model_copy(update={"segments": segments, "text": text})


# -- the table -----------------------------------------------------------------------------------
ASR = Stage("asr", Service.ASR, Phase.TRANSCRIBING, ASR_ARTIFACT, lambda spec: True, Pipeline.transcribe)
PUNCTUATE = Stage(
    "punctuate",
    Service.LLM,
    Phase.POSTPROCESSING,
    PUNCTUATE_ARTIFACT,
    lambda spec: spec.postprocess.punctuation,
    Pipeline.punctuate,
)
SUMMARIZE = Stage(
    "summarize",
    Service.LLM,
    Phase.POSTPROCESSING,
    SUMMARIZE_ARTIFACT,
    lambda spec: spec.postprocess.summary != "none",
    Pipeline.summarize,
)
TOPICS = Stage(
    "topics", Service.LLM, Phase.POSTPROCESSING, TOPICS_ARTIFACT, lambda spec: spec.postprocess.topics, Pipeline.topics
)
WRITE = Stage("write", None, Phase.POSTPROCESSING, None, lambda spec: True, Pipeline.write)

#: Every stage, in the order a job runs them.
STAGES: Mapping[str, Stage] = {s.name: s for s in (ASR, PUNCTUATE, SUMMARIZE, TOPICS, WRITE)}


def plan(spec: JobSpec) -> tuple[Stage, ...]:
    """The stages of a job, in order."""
    return tuple(s for s in STAGES.values() if s.wanted(spec))


def services_needed(spec: JobSpec) -> frozenset[Service]:
    """The services a job will call."""
    return frozenset(s.service for s in plan(spec) if s.service is not None)
