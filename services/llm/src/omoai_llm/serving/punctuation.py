"""Punctuation and casing of segments by an LLM: split by the token budget, call the model
concurrently, turn each answer into the chunk's words, and re-split into the original segments with
their times.

Two methods: ``rewrite`` (the model writes the text again; :mod:`omoai_llm.alignment` maps it back
onto the input words) and ``edits`` (the model lists only marks and casing per numbered word;
:mod:`omoai_llm.edits`). Either way every input word comes out, in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from omoai_core.schemas import Segment

from omoai_llm.alignment import AlignmentStats, Policy, align_words, words_of
from omoai_llm.chunking import word_ranges
from omoai_llm.edits import Outcome, apply_edits, capitalise_sentence_starts, edits_schema, numbered, parse_edits
from omoai_llm.parsing import clean_answer
from omoai_llm.serving.common import CallContext, map_concurrently
from omoai_llm.serving.tagging import resplit

#: Generated tokens allowed per input token: punctuation adds marks, casing can split tokens.
OUTPUT_RATIO = 1.3
OUTPUT_MARGIN = 16
#: Edits mode: generated tokens per word at most (a number and a separator for a mark and a case)
#: plus the answer's fixed keys; the numbered prompt costs about this much more than the words.
EDITS_TOKENS_PER_WORD = 3
EDITS_FIXED_TOKENS = 48

LlmMethod = Literal["rewrite", "edits"]


@dataclass(frozen=True)
class PunctuationResult:
    segments: list[Segment]
    stats: AlignmentStats
    chunks: int
    edit_answers: Counter[Outcome] = field(default_factory=Counter)  # edits mode: answers by outcome


async def punctuate(
    segments: Sequence[Segment],
    ctx: CallContext,
    *,
    system_prompt: str,
    policy: Policy = "strict",
    chunk_tokens: int = 1024,
    context_words: int = 8,
    method: LlmMethod = "rewrite",
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
    # Edits: the numbered prompt (words + numbers) and an answer of a few tokens per word.
    ratio = 1 + OUTPUT_RATIO if method == "rewrite" else 1 + 2 * EDITS_TOKENS_PER_WORD
    budget = max(8, min(chunk_tokens, int(room / ratio)))
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
        if method == "edits":
            return await one_by_edits(words, r, lo)
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

    async def one_by_edits(words: list[str], r: range, lo: int) -> list[str]:
        max_tokens = EDITS_FIXED_TOKENS + EDITS_TOKENS_PER_WORD * len(words)
        completion = await ctx.chat(system_prompt, numbered(words), max_tokens, schema=edits_schema(len(words)))
        edits, outcome = parse_edits(completion.text, len(words), truncated=completion.finish_reason == "length")
        answers[outcome] += 1
        mine = apply_edits(words, edits)[r.start - lo : r.stop - lo]
        stats.merge(_edit_stats(flat[r.start : r.stop], segment_of[r.start : r.stop], used=edits is not None))
        return mine

    stats = AlignmentStats()
    answers: Counter[Outcome] = Counter()
    pieces = await map_concurrently(one, ranges)
    out_words = [w for piece in pieces for w in piece]
    if method == "edits":  # sentence starts by rule, across chunk edges
        capitalise_sentence_starts(out_words)
    if len(out_words) != len(flat):  # cannot happen: align_words returns one word per input word
        raise RuntimeError(f"alignment returned {len(out_words)} words for {len(flat)}")

    return PunctuationResult(resplit(segments, seg_words, out_words), stats, len(ranges), answers)


def _edit_stats(words: Sequence[str], segments: Sequence[int], *, used: bool) -> AlignmentStats:
    """Edits keep every word: all matched, or all restored when the answer was not used."""
    n = len(words)
    return AlignmentStats(
        words_in=n,
        words_out=n,
        matched=n if used else 0,
        restored=0 if used else n,
        model_words=n if used else 0,
        chars_in=len(" ".join(words)),
        fallback_segments=set() if used else set(segments),
    )
