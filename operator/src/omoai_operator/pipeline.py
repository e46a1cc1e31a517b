"""The stages of one job (ASR, punctuation, summary, topics, write), each idempotent: its result is
staged in the job's store before the status says it is done, and a stage whose result is already
staged is not redone (a restarted operator never transcribes the same recording twice).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omoai_core.schemas import Document, Quality, Segment, Summary, Topic, Transcript
from omoai_formats import render
from pydantic import TypeAdapter

from omoai_operator.clients import AsrClient, LlmClient, StageError
from omoai_operator.reconcile import clock
from omoai_operator.spec import JobSpec
from omoai_operator.storage import Store

log = logging.getLogger(__name__)

_TOPICS = TypeAdapter(list[Topic])


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

    @property
    def stem(self) -> str:
        return self.spec.output.stem or self.name


@dataclass(frozen=True)
class StageOutcome:
    status: dict[str, Any] = field(default_factory=dict)  # extra status fields (audio duration, ...)
    reused: bool = False  # found already done in storage
    files: list[str] = field(default_factory=list)
    summary: str | None = None
    duration_s: float = 0.0


class Pipeline:
    def __init__(self, asr: AsrClient, llm: LlmClient) -> None:
        self.asr = asr
        self.llm = llm

    async def run_stage(self, stage: str, ctx: JobContext) -> StageOutcome:
        t0 = time.monotonic()
        outcome = await getattr(self, f"_{stage}")(ctx)
        return StageOutcome(outcome.status, outcome.reused, outcome.files, outcome.summary, time.monotonic() - t0)

    async def is_staged(self, stage: str, ctx: JobContext) -> bool:
        """Whether the stage's result is already stored (a restart after the work finished)."""
        name = {"asr": "asr.json", "punctuate": "punctuate.json", "summarize": "summarize.json",
                "topics": "topics.json"}.get(stage)
        return name is not None and await ctx.store.get(name) is not None

    # -- stages ----------------------------------------------------------------------------------
    async def _asr(self, ctx: JobContext) -> StageOutcome:
        staged = await self._load_transcript(ctx)
        reused = staged is not None
        if staged is None:
            a = ctx.spec.asr
            options = {
                "chunk_size": a.chunk_size,
                "left_context": a.left_context,
                "right_context": a.right_context,
                "total_batch_duration": a.total_batch_duration,
                "word_timestamps": a.word_timestamps,
                **ctx.spec.diarization.asr_fields(),  # speakers on segments and words when enabled
            }
            if ctx.audio_path is not None:
                staged = await self.asr.transcribe_file(ctx.audio_path, options)
            else:
                staged = await self.asr.transcribe(ctx.audio_url, options)
            if staged.duration <= 0:
                raise StageError.permanent("InvalidAudio", "the ASR service found no audio in the recording")
            await ctx.store.put("asr.json", staged.model_dump_json().encode())
        return StageOutcome(
            {"audioDurationSeconds": round(staged.duration, 3), "audioDuration": clock(staged.duration)}, reused
        )

    async def _punctuate(self, ctx: JobContext) -> StageOutcome:
        if await ctx.store.get("punctuate.json") is not None:
            return StageOutcome(reused=True)
        transcript = await self._transcript(ctx)
        segments, quality = await self.llm.punctuate(transcript.segments, ctx.spec.language)
        payload = {
            "segments": [s.model_dump() for s in segments],
            "quality": quality.model_dump() if quality else None,
        }
        await ctx.store.put("punctuate.json", json.dumps(payload, ensure_ascii=False).encode())
        return StageOutcome()

    async def _summarize(self, ctx: JobContext) -> StageOutcome:
        if await ctx.store.get("summarize.json") is not None:
            return StageOutcome(reused=True)
        segments = await self._segments(ctx)
        summary = await self.llm.summarize(segments, ctx.spec.language, ctx.spec.postprocess.summary)
        await ctx.store.put("summarize.json", summary.model_dump_json().encode())
        return StageOutcome()

    async def _topics(self, ctx: JobContext) -> StageOutcome:
        if await ctx.store.get("topics.json") is not None:
            return StageOutcome(reused=True)
        segments = await self._segments(ctx)
        topics = await self.llm.topics(segments, ctx.spec.language)
        await ctx.store.put("topics.json", _TOPICS.dump_json(topics))
        return StageOutcome()

    async def _write(self, ctx: JobContext) -> StageOutcome:
        doc = await self.document(ctx)
        outputs = {f"{ctx.stem}.{fmt}": render(doc, fmt).encode() for fmt in ctx.spec.output.formats}
        files = await ctx.store.commit(outputs)
        summary = None
        if doc.summary is not None:
            summary = f"{doc.summary.title}: {doc.summary.abstract}".strip()
        elif doc.transcript.text:
            summary = doc.transcript.text[:200]
        return StageOutcome(files=files, summary=summary)

    # -- assembling ------------------------------------------------------------------------------
    async def document(self, ctx: JobContext) -> Document:
        transcript = await self._transcript(ctx)
        quality: Quality | None = None
        raw = await ctx.store.get("punctuate.json")
        if raw is not None:
            data = json.loads(raw)
            transcript = _with_segments(transcript, [Segment.model_validate(s) for s in data["segments"]])
            quality = Quality.model_validate(data["quality"]) if data.get("quality") else None
        raw = await ctx.store.get("summarize.json")
        summary = Summary.model_validate_json(raw) if raw is not None else None
        raw = await ctx.store.get("topics.json")
        topics = _TOPICS.validate_json(raw) if raw is not None else None
        return Document(transcript=transcript, summary=summary, topics=topics, quality=quality)

    async def _load_transcript(self, ctx: JobContext) -> Transcript | None:
        raw = await ctx.store.get("asr.json")
        return Transcript.model_validate_json(raw) if raw is not None else None

    async def _transcript(self, ctx: JobContext) -> Transcript:
        t = await self._load_transcript(ctx)
        if t is None:
            # The status said ASR was done but its result is gone (staging wiped): start over.
            raise StageError.temporary("TranscriptMissing", "the stored transcript disappeared; transcribing again")
        return t

    async def _segments(self, ctx: JobContext) -> list[Segment]:
        raw = await ctx.store.get("punctuate.json")
        if raw is not None:
            return [Segment.model_validate(s) for s in json.loads(raw)["segments"]]
        return (await self._transcript(ctx)).segments


def _with_segments(t: Transcript, segments: list[Segment]) -> Transcript:
    if len(segments) == len(t.segments):
        # Punctuation keeps segment times; keep the word timings (and speakers) the ASR gave.
        segments = [
            s if s.words and s.speaker == o.speaker else s.model_copy(update={"words": s.words or o.words, "speaker": o.speaker})
            for s, o in zip(segments, t.segments)
        ]
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    return t.model_copy(update={"segments": segments, "text": text})
