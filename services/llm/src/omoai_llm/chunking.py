"""Splitting long transcripts by the model's token budget, counted with the backend's own tokenizer.

Chunks end at segment boundaries where they can; a single segment longer than the budget is cut
between words. Nothing is ever dropped or duplicated: the chunks partition the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Counter = Callable[[str], int]


def pack(counts: Sequence[int], budget: int) -> list[range]:
    """Greedy consecutive groups of items whose token counts add up to at most ``budget``.

    An item over the budget on its own gets a group of its own (callers split those first).
    """
    if budget < 1:
        raise ValueError("budget must be positive")
    groups: list[range] = []
    start, total = 0, 0
    for i, n in enumerate(counts):
        if i > start and total + n > budget:
            groups.append(range(start, i))
            start, total = i, 0
        total += n
    if start < len(counts):
        groups.append(range(start, len(counts)))
    return groups


def split_words(words: Sequence[str], count: Counter, budget: int) -> list[range]:
    """Consecutive word ranges of at most ``budget`` tokens (a word longer than that stands alone)."""
    # Counting each word with its leading space matches how BPE tokenizers see running text.
    return pack([count(" " + w) for w in words], budget)


def word_ranges(segment_words: Sequence[Sequence[str]], count: Counter, budget: int) -> list[range]:
    """Ranges over the flat word list (all segments' words in order) of at most ``budget`` tokens.

    Whole segments are packed together; a segment over the budget is split between words.
    """
    units: list[range] = []  # flat word ranges that must not be split further
    unit_counts: list[int] = []
    pos = 0
    for words in segment_words:
        if not words:
            continue
        n = count(" ".join(words))
        if n <= budget:
            units.append(range(pos, pos + len(words)))
            unit_counts.append(n)
        else:
            for r in split_words(words, count, budget):
                units.append(range(pos + r.start, pos + r.stop))
                unit_counts.append(sum(count(" " + words[k]) for k in r))
        pos += len(words)
    return [range(units[g.start].start, units[g.stop - 1].stop) for g in pack(unit_counts, budget)]


def text_units(texts: Sequence[str], count: Counter, budget: int) -> list[str]:
    """``texts`` with every text over the budget cut between words into pieces that fit."""
    out: list[str] = []
    for text in texts:
        if not text.strip():
            continue
        if count(text) <= budget:
            out.append(text)
            continue
        words = text.split()
        out.extend(" ".join(words[r.start : r.stop]) for r in split_words(words, count, budget))
    return out
