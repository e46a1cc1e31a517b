"""Summaries: one call when the transcript fits the context, map-reduce when it does not.

The switch is decided by token counts from the backend's tokenizer. Map calls run concurrently;
their partial summaries are reduced in one call, or level by level when even they do not fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from omoai_core.errors import UpstreamError
from omoai_core.schemas import Summary

from omoai_llm.chunking import pack, text_units
from omoai_llm.parsing import ParsedSummary, clean_answer, parse_summary
from omoai_llm.serving.common import RETRY_TEMPERATURE, CallContext, map_concurrently

MAX_LEVELS = 6


@dataclass(frozen=True)
class SummaryPrompts:
    single: str
    map: str
    reduce: str


@dataclass(frozen=True)
class SummaryResult:
    summary: Summary
    strategy: Literal["single", "map_reduce"]
    chunks: int  # map calls (0 for a single pass)
    levels: int  # reduce levels (0 for a single pass)
    structured: bool  # the final answer was JSON (not recovered from plain text)
    extractive_parts: int = 0  # map parts whose summary was unusable twice: their opening was used


def _title_from(text: str, max_words: int = 12) -> str:
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    words = first.split()
    return " ".join(words[:max_words]).rstrip(",;:") + ("…" if len(words) > max_words else "")


def _to_summary(parsed: ParsedSummary) -> Summary:
    title = parsed.title or _title_from(parsed.abstract or (parsed.bullets[0] if parsed.bullets else ""))
    return Summary(title=title, abstract=parsed.abstract, bullets=parsed.bullets)


def _partial_text(answer: str) -> str:
    """A map answer as text for the reduce step: its abstract and bullets, or the cleaned answer."""
    parsed = parse_summary(answer)
    if parsed is None or not (parsed.abstract or parsed.bullets or parsed.title):
        return ""
    if not parsed.structured:
        return clean_answer(answer)
    lines = [parsed.abstract] if parsed.abstract else []
    lines += [f"- {b}" for b in parsed.bullets]
    return "\n".join(lines)


async def summarize(
    texts: Sequence[str], ctx: CallContext, *, prompts: SummaryPrompts, max_tokens: int = 768
) -> SummaryResult:
    """Summarise ``texts`` (segment texts or paragraphs, in order)."""
    count = ctx.backend.count_tokens
    full = "\n".join(t.strip() for t in texts if t.strip())
    if not full:
        raise ValueError("nothing to summarise")  # the route refuses empty input before this
    room = ctx.room(prompts.single, max_tokens)
    if count(full) <= room:
        answer = await _ask(ctx, prompts.single, full, max_tokens)
        return SummaryResult(_final(answer), "single", 0, 0, _structured(answer))

    map_tokens = max(64, max_tokens // 2)
    level_texts = [t for t in texts if t.strip()]
    chunks_total, levels, extractive = 0, 0, 0
    while True:
        levels += 1
        map_room = ctx.room(prompts.map, map_tokens)
        units = text_units(level_texts, count, map_room)
        groups = pack([count(u) for u in units], map_room)
        chunks = ["\n".join(units[g.start : g.stop]) for g in groups]
        chunks_total += len(chunks)

        async def one(chunk: str) -> tuple[str, bool]:
            partial = _partial_text(await _ask(ctx, prompts.map, chunk, map_tokens, parse=_partial_text))
            if partial:
                return partial, False
            # Unusable twice: the part's opening words stand in for it, so no part of the
            # recording silently drops out of the summary.
            return " ".join(chunk.split()[: max(16, map_tokens // 2)]), True

        results = await map_concurrently(one, chunks)
        partials = [p for p, _ in results]
        extractive += sum(1 for _, fallback in results if fallback)
        combined = "\n\n".join(f"[{i + 1}]\n{p}" for i, p in enumerate(partials))
        reduce_room = ctx.room(prompts.reduce, max_tokens)
        if count(combined) <= reduce_room or levels >= MAX_LEVELS:
            answer = await _ask(ctx, prompts.reduce, combined, max_tokens)
            return SummaryResult(_final(answer), "map_reduce", chunks_total, levels, _structured(answer), extractive)
        level_texts = partials  # summaries of summaries, until they fit one reduce call


async def _ask(
    ctx: CallContext, system: str, user: str, max_tokens: int, *, parse: Callable[[str], object] = parse_summary
) -> str:
    """The model's answer; an unusable one (empty, whitespace, no text) is asked again once, sampled."""
    answer = (await ctx.chat(system, user, max_tokens)).text
    if parse(answer):
        return answer
    return (await ctx.chat(system, user, max_tokens, temperature=max(ctx.temperature, RETRY_TEMPERATURE))).text


def _structured(answer: str) -> bool:
    parsed = parse_summary(answer)
    return bool(parsed and parsed.structured)


def _final(answer: str) -> Summary:
    parsed = parse_summary(answer)
    if parsed is None:
        raise UpstreamError("the model returned an empty or unreadable summary; the request can be retried")
    return _to_summary(parsed)
