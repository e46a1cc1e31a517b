"""Punctuation and casing of segments: split by the token budget, call the model concurrently,
align each answer back to its input words, and re-split into the original segments with their
times. See :mod:`omoai_llm.alignment` for the guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omoai_core.schemas import Segment

from omoai_llm.alignment import AlignmentStats, Policy, align_words, words_of
from omoai_llm.chunking import word_ranges
from omoai_llm.parsing import clean_answer
from omoai_llm.serving.common import CallContext, map_concurrently

#: Generated tokens allowed per input token: punctuation adds marks, casing can split tokens.
OUTPUT_RATIO = 1.3
OUTPUT_MARGIN = 16


@dataclass(frozen=True)
class PunctuationResult:
    segments: list[Segment]
    stats: AlignmentStats
    chunks: int


async def punctuate(
    segments: Sequence[Segment],
    ctx: CallContext,
    *,
    system_prompt: str,
    policy: Policy = "strict",
    chunk_tokens: int = 1024,
    context_words: int = 8,
) -> PunctuationResult:
    """Punctuate ``segments``; each chunk is shown with up to ``context_words`` words of its
    neighbours on both sides, so that a sentence running over a chunk edge is not ended there.
    Only the chunk's own words are taken from each answer."""
    seg_words = [words_of(s.text) for s in segments]
    flat = [w for words in seg_words for w in words]
    segment_of = [i for i, words in enumerate(seg_words) for _ in words]
    if not flat:
        return PunctuationResult([s.model_copy() for s in segments], AlignmentStats(), 0)

    # Budget: the chunk, its punctuated copy (OUTPUT_RATIO x) and the prompt must fit the context.
    count = ctx.backend.count_tokens
    room = ctx.room(system_prompt, OUTPUT_MARGIN)
    budget = max(8, min(chunk_tokens, int(room / (1 + OUTPUT_RATIO))))
    # Context costs tokens on both sides; it is worth it only when chunks are much larger.
    context_tokens = 2 * context_words * 3
    if context_words and budget >= 4 * context_tokens:
        budget -= context_tokens
    else:
        context_words = 0
    ranges = word_ranges(seg_words, count, budget)

    async def one(r: range) -> list[str]:
        lo, hi = max(0, r.start - context_words), min(len(flat), r.stop + context_words)
        words = flat[lo:hi]
        text = " ".join(words)
        max_tokens = int(count(text) * OUTPUT_RATIO) + OUTPUT_MARGIN
        completion = await ctx.chat(system_prompt, text, max_tokens)
        aligned = align_words(
            words,
            clean_answer(completion.text),
            policy=policy,
            segment_of=segment_of[lo:hi],
            window=range(r.start - lo, r.stop - lo),
        )
        stats.merge(aligned.stats)
        return aligned.words

    stats = AlignmentStats()
    pieces = await map_concurrently(one, ranges)
    out_words = [w for piece in pieces for w in piece]
    if len(out_words) != len(flat):  # cannot happen: align_words returns one word per input word
        raise RuntimeError(f"alignment returned {len(out_words)} words for {len(flat)}")

    result: list[Segment] = []
    pos = 0
    for seg, words in zip(segments, seg_words, strict=True):
        mine = out_words[pos : pos + len(words)]
        pos += len(words)
        result.append(seg.model_copy(update={"text": " ".join(mine) if words else seg.text.strip()}))
    return PunctuationResult(result, stats, len(ranges))
