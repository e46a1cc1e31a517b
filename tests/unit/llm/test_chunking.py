"""Token-budget splitting partitions the input: nothing dropped, nothing duplicated."""

from __future__ import annotations

import random

from omoai_llm.chunking import pack, split_words, text_units, word_ranges

from .fakes import count_words


def test_pack_groups_consecutive_items_up_to_the_budget():
    assert pack([3, 3, 3, 3], 6) == [range(2), range(2, 4)]
    assert pack([10, 1, 1], 5) == [range(1), range(1, 3)]  # an oversized item stands alone
    assert pack([], 5) == []


def test_word_ranges_partition_the_words_and_respect_the_budget():
    rng = random.Random(3)
    for _ in range(100):
        segs = [["w"] * rng.randint(0, 40) for _ in range(rng.randint(1, 30))]
        budget = rng.randint(1, 50)
        ranges = word_ranges(segs, count_words, budget)
        flat = sum(len(s) for s in segs)
        covered = [i for r in ranges for i in r]
        assert covered == list(range(flat))
        assert all(len(r) <= budget for r in ranges)


def test_word_ranges_keep_segments_whole_when_they_fit():
    segs = [["a"] * 3, ["b"] * 3, ["c"] * 3]
    assert word_ranges(segs, count_words, 6) == [range(6), range(6, 9)]


def test_a_segment_over_the_budget_is_cut_between_words():
    assert split_words(["w"] * 10, count_words, 4) == [range(4), range(4, 8), range(8, 10)]


def test_text_units_cut_only_the_long_texts():
    assert text_units(["a b", "c d e f g", " "], count_words, 3) == ["a b", "c d e", "f g"]
