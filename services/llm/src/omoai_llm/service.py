"""LlmService: the four operations of the API on top of the ModelManager, with limits, metrics and
language handling; HTTP-free so the CLI and the routes share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import cast

from omoai_core.contracts import primary_language
from omoai_core.errors import InvalidInputError, PayloadTooLargeError
from omoai_core.schemas import Quality, Segment

from omoai_llm.alignment import AlignmentStats, Policy
from omoai_llm.backends.base import Backend
from omoai_llm.metrics import LlmMetrics
from omoai_llm.models import ModelManager, Resident
from omoai_llm.prompts import Prompts
from omoai_llm.protocol import (
    AlignmentReport,
    ModelInfo,
    ModelsResponse,
    PostprocessRequest,
    PostprocessResponse,
    PunctuateRequest,
    PunctuateResponse,
    SummarizeRequest,
    SummarizeResponse,
    TopicsRequest,
    TopicsResponse,
    Usage,
)
from omoai_llm.serving.common import CallContext
from omoai_llm.serving.punctuation import punctuate
from omoai_llm.serving.summary import SummaryPrompts, summarize
from omoai_llm.serving.tagging import tag_segments
from omoai_llm.serving.topics import find_topics
from omoai_llm.settings import LlmSettings
from omoai_llm.speakers import clean_summary, clean_topics, note, speakers_of, tagged
from omoai_llm.tagger import Tagger

log = logging.getLogger(__name__)


def _rate(errors: int, total: int) -> float:
    return round(errors / total, 6) if total else 0.0


def quality_of(s: AlignmentStats, segments: int) -> Quality:
    return Quality(
        wer=_rate(s.output_word_errors, s.words_in),
        cer=_rate(s.output_char_errors, s.chars_in),
        words_in=s.words_in,
        words_out=s.words_out,
        fallback_segments=min(len(s.fallback_segments), segments),
    )


def report_of(s: AlignmentStats, policy: Policy) -> AlignmentReport:
    return AlignmentReport(
        policy=policy,
        model_wer=_rate(s.model_word_errors, s.words_in),
        model_cer=_rate(s.model_char_errors, s.chars_in),
        matched=s.matched,
        replaced=s.replaced,
        spelling_fixes=s.spelling_fixes,
        restored=s.restored,
        invented=s.invented,
    )


#: Licences of published taggers (shown before they are loaded; a loaded one shows its card's).
KNOWN_TAGGER_LICENSES = {
    "dragonSwing/vibert-capu": "cc-by-sa-4.0",
    "dragonSwing/xlm-roberta-capu": "cc-by-sa-4.0",
}


def _extractive_warning(parts: int, chunks: int) -> str:
    return f"{parts} of {chunks} parts gave no usable summary twice; their opening words were used instead"


class LlmService:
    def __init__(self, settings: LlmSettings, manager: ModelManager, prompts: Prompts, metrics: LlmMetrics) -> None:
        self.settings = settings
        self.manager = manager
        self.prompts = prompts
        self.metrics = metrics

    # -- request checks ---------------------------------------------------------------------------

    def language(self, requested: str | None) -> str:
        """The primary subtag (``vi-VN`` -> ``vi``); languages without prompts get the neutral ones."""
        return primary_language(requested or self.settings.language)

    def check_size(self, segments: Sequence[Segment] | None = None, text: str | None = None) -> None:
        if segments is not None and len(segments) > self.settings.max_segments:
            raise PayloadTooLargeError(
                f"{len(segments)} segments is over the limit of {self.settings.max_segments}",
                details={"max_segments": self.settings.max_segments},
            )
        chars = len(text or "") + sum(len(s.text) for s in segments or ())
        if chars > self.settings.max_input_chars:
            raise PayloadTooLargeError(
                f"{chars} characters of text is over the limit of {self.settings.max_input_chars}",
                details={"max_input_chars": self.settings.max_input_chars},
            )
        if segments is not None:
            for i, s in enumerate(segments):
                if i and s.start + 1e-6 < segments[i - 1].start:
                    raise InvalidInputError(
                        f"segments must be in time order: segment {i} starts at {s.start}s, "
                        f"before segment {i - 1} at {segments[i - 1].start}s",
                        details={"segment": i},
                    )

    # -- plumbing ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _resident(self, task: str, method: str = "rewrite") -> AsyncIterator[Resident]:
        """The model of ``task`` held for the block, its duration and outcome counted."""
        model = self.manager.model_for(task, method)
        async with self.manager.use(model) as resident:
            started = time.perf_counter()
            outcome = "error"
            try:
                yield resident
                outcome = "ok"
            finally:
                self.metrics.duration.labels(task=task, model=resident.model_name).observe(
                    time.perf_counter() - started
                )
                self.metrics.requests.labels(task=task, outcome=outcome).inc()

    @contextlib.asynccontextmanager
    async def _task(self, task: str, method: str = "rewrite") -> AsyncIterator[CallContext]:
        async with self._resident(task, method) as resident:
            ctx = CallContext(
                cast(Backend, resident),
                temperature=self.settings.temperature,
                concurrency=self.settings.concurrency,
                on_completion=functools.partial(self.metrics.completion, task=task),
            )
            try:
                yield ctx
            finally:
                if ctx.usage.cleaned_chars:
                    self.metrics.cleaned_chars.labels(task=task).inc(ctx.usage.cleaned_chars)

    @staticmethod
    def _usage(ctx: CallContext) -> Usage:
        u = ctx.usage
        return Usage(
            model=ctx.backend.model_name,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            calls=u.calls,
            truncated_calls=u.truncated_calls,
        )

    # -- operations -------------------------------------------------------------------------------

    def models(self) -> ModelsResponse:
        """The configured models, which are loaded, and the licences known for them."""
        resident = self.manager.loaded
        out = []
        for name in self.manager.models:
            loaded = resident.get(name)
            if name == self.manager.tagger_model:
                license = getattr(loaded, "license", None) or KNOWN_TAGGER_LICENSES.get(name)
                out.append(ModelInfo(id=name, kind="tagger", license=license, resident=loaded is not None))
            else:
                out.append(ModelInfo(id=name, kind="llm", resident=loaded is not None))
        return ModelsResponse(data=out)

    async def punctuate(self, req: PunctuateRequest) -> PunctuateResponse:
        self.check_size(req.segments)
        lang = self.language(req.language)
        policy: Policy = req.policy or self.settings.alignment
        method = req.method or self.settings.punctuation_method
        if method == "tagger":
            return await self._punctuate_by_tagger(req, policy)
        async with self._task("punctuate", method) as ctx:
            result = await punctuate(
                req.segments,
                ctx,
                system_prompt=self.prompts.get(lang, "punctuate_edits" if method == "edits" else "punctuate"),
                policy=policy,
                chunk_tokens=self.settings.punct_chunk_tokens,
                context_words=self.settings.punct_context_words,
                method=method,
            )
        self.metrics.alignment(result.stats)
        for answer, n in result.edit_answers.items():
            self.metrics.edit_answers.labels(outcome=answer).inc(n)
        return PunctuateResponse(
            segments=result.segments,
            method=method,
            text=" ".join(s.text for s in result.segments if s.text),
            quality=quality_of(result.stats, len(req.segments)),
            alignment=report_of(result.stats, policy),
            chunks=result.chunks,
            usage=self._usage(ctx),
        )

    async def _punctuate_by_tagger(self, req: PunctuateRequest, policy: Policy) -> PunctuateResponse:
        async with self._resident("punctuate", "tagger") as resident:
            tagger = cast(Tagger, resident)
            result = await tag_segments(req.segments, tagger)
        self.metrics.alignment(result.stats)
        if result.refused:
            self.metrics.tagger_refused.inc(result.refused)
        return PunctuateResponse(
            segments=result.segments,
            method="tagger",
            text=" ".join(s.text for s in result.segments if s.text),
            quality=quality_of(result.stats, len(req.segments)),
            alignment=report_of(result.stats, policy),
            chunks=result.windows,
            usage=Usage(model=tagger.model_name, calls=result.windows),
        )

    async def summarize(self, req: SummarizeRequest) -> SummarizeResponse:
        self.check_size(req.segments, req.text)
        lang = self.language(req.language)
        texts = [s.text for s in req.segments] if req.segments is not None else (req.text or "").split("\n")
        if not any(t.strip() for t in texts):
            raise InvalidInputError("there is no text to summarise")
        speakers = speakers_of(req.segments or [])
        prompts = self._summary_prompts(lang)
        if speakers:  # speaker-tagged lines, and the labels the model may use
            texts = [s.text for s in tagged(req.segments or [])]
            extra = " " + note(lang, speakers)
            prompts = SummaryPrompts(
                single=prompts.single + extra, map=prompts.map + extra, reduce=prompts.reduce + extra
            )
        async with self._task("summarize") as ctx:
            result = await summarize(texts, ctx, prompts=prompts, max_tokens=self.settings.summary_max_tokens)
        summary = result.summary
        if speakers:
            summary, dropped = clean_summary(summary, speakers)
            if dropped:
                log.info("summary: dropped %d sentences naming speakers not in the transcript", dropped)
        return SummarizeResponse(
            summary=summary,
            strategy=result.strategy,
            chunks=result.chunks,
            structured=result.structured,
            warnings=[_extractive_warning(result.extractive_parts, result.chunks)] if result.extractive_parts else [],
            usage=self._usage(ctx),
        )

    async def topics(self, req: TopicsRequest) -> TopicsResponse:
        self.check_size(req.segments)
        lang = self.language(req.language)
        if not any(s.text.strip() for s in req.segments):
            raise InvalidInputError("there is no text to find topics in")
        speakers = speakers_of(req.segments)
        prompt = self.prompts.get(lang, "topics") + (" " + note(lang, speakers) if speakers else "")
        async with self._task("topics") as ctx:
            result = await find_topics(
                tagged(req.segments),
                ctx,
                prompt=prompt,
                max_topics=req.max_topics or self.settings.max_topics,
                max_tokens=self.settings.topics_max_tokens,
            )
        topics = result.topics
        if speakers:
            topics, dropped = clean_topics(topics, speakers)
            if dropped:
                log.info("topics: removed %d mentions of speakers not in the transcript", dropped)
        return TopicsResponse(topics=topics, chunks=result.chunks, warnings=result.warnings, usage=self._usage(ctx))

    async def postprocess(self, req: PostprocessRequest) -> PostprocessResponse:
        """Punctuation first; summary and topics then run concurrently on the punctuated text."""
        self.check_size(req.segments)
        lang = self.language(req.language)
        tasks = set(req.tasks)
        out = PostprocessResponse(segments=[s.model_copy() for s in req.segments], text="")
        if "punctuate" in tasks:
            p = await self.punctuate(
                PunctuateRequest(segments=req.segments, language=lang, policy=req.policy, method=req.method)
            )
            out.segments, out.quality, out.alignment = p.segments, p.quality, p.alignment
            out.usage["punctuate"] = p.usage
        out.text = " ".join(s.text.strip() for s in out.segments if s.text.strip())
        has_text = bool(out.text)
        do_summary = "summarize" in tasks and has_text
        do_topics = "topics" in tasks and has_text
        if not has_text and tasks - {"punctuate"}:
            out.warnings.append("the transcript has no words: nothing to summarise or split into topics")
        if do_summary or do_topics:
            try:
                async with asyncio.TaskGroup() as tg:
                    summary_task = (
                        tg.create_task(self.summarize(SummarizeRequest(segments=out.segments, language=lang)))
                        if do_summary
                        else None
                    )
                    topics_task = (
                        tg.create_task(
                            self.topics(TopicsRequest(segments=out.segments, language=lang, max_topics=req.max_topics))
                        )
                        if do_topics
                        else None
                    )
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            if summary_task is not None:
                s = summary_task.result()
                out.summary = s.summary
                out.warnings.extend(s.warnings)
                out.usage["summarize"] = s.usage
            if topics_task is not None:
                t = topics_task.result()
                out.topics = t.topics
                out.warnings.extend(t.warnings)
                out.usage["topics"] = t.usage
        return out

    def _summary_prompts(self, lang: str) -> SummaryPrompts:
        return SummaryPrompts(
            single=self.prompts.get(lang, "summary"),
            map=self.prompts.get(lang, "summary_map"),
            reduce=self.prompts.get(lang, "summary_reduce"),
        )
