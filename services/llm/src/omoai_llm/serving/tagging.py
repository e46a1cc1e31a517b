"""Punctuation and casing of segments by the tagger: all words of the request in one list (windows
with margins cross segment edges, as chunks with context do for the LLM), then re-split into the
original segments with their times. Words are the input's by construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omoai_core.schemas import Segment

from omoai_llm.alignment import AlignmentStats, words_of
from omoai_llm.tagger import Tagger


@dataclass(frozen=True)
class TaggingResult:
    segments: list[Segment]
    stats: AlignmentStats
    windows: int
    refused: int  # labels that would have changed a word, not applied


def resplit(segments: Sequence[Segment], seg_words: Sequence[Sequence[str]], out_words: Sequence[str]) -> list[Segment]:
    """The segments with their words replaced, in order, by ``out_words`` (as many as they had)."""
    result: list[Segment] = []
    pos = 0
    for seg, words in zip(segments, seg_words, strict=True):
        mine = out_words[pos : pos + len(words)]
        pos += len(words)
        result.append(seg.model_copy(update={"text": " ".join(mine) if words else seg.text.strip()}))
    return result


async def tag_segments(segments: Sequence[Segment], tagger: Tagger) -> TaggingResult:
    seg_words = [words_of(s.text) for s in segments]
    flat = [w for words in seg_words for w in words]
    tagged = await tagger.tag(flat)
    if len(tagged.words) != len(flat):  # cannot happen: the tagger returns one word per word
        raise RuntimeError(f"the tagger returned {len(tagged.words)} words for {len(flat)}")
    n = len(flat)
    stats = AlignmentStats(
        words_in=n, words_out=n, matched=n, model_words=n, chars_in=len(" ".join(w.casefold() for w in flat))
    )
    return TaggingResult(resplit(segments, seg_words, tagged.words), stats, tagged.windows, tagged.refused)
