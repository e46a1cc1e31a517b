"""The punctuation quality harness scores what it should, and the edits format can express the
whole text set: the ideal edits answer restores every paragraph exactly."""

from __future__ import annotations

import json

from omoai_llm.edits import apply_edits, capitalise_sentence_starts, edits_of, parse_edits

from benchmarks import punctuation_quality as pq


def test_the_text_set_is_large_enough_and_covers_three_styles():
    paragraphs = pq.read_set()
    assert sum(len(p.words) for p in paragraphs) >= 2000
    assert {p.style for p in paragraphs} == {"news", "conversation", "lecture"}


def test_a_perfect_restoration_scores_one_and_a_stripped_one_zero():
    paragraphs = pq.read_set()
    _, perfect = pq.report(paragraphs, [p.text for p in paragraphs])
    assert all(perfect["all"].f1(m) == 1.0 for m in (".", ",", "?", ":"))
    assert perfect["all"].case_ok == perfect["all"].words == perfect["all"].kept
    _, bare = pq.report(paragraphs, [" ".join(pq.strip(p.words)) for p in paragraphs])
    assert bare["all"].f1(".") == 0.0 and bare["all"].kept == bare["all"].words
    assert 0.5 < bare["all"].case_ok / bare["all"].words < 1.0


def test_a_lost_word_makes_the_paragraph_count_as_not_kept():
    p = pq.Paragraph("news", "Xin chào, các bạn.")
    _, s = pq.report([p], ["Xin các bạn."])
    assert s["all"].kept == 0 and s["all"].words == 4


def test_the_ideal_edits_answer_restores_every_paragraph_exactly():
    for p in pq.read_set():
        words = p.words
        answer = json.dumps(edits_of(words), separators=(",", ":"))
        edits, outcome = parse_edits(answer, len(words))
        assert outcome == "ok"
        restored = capitalise_sentence_starts(apply_edits(pq.strip(words), edits))
        assert restored == words, (p.text, " ".join(restored))
