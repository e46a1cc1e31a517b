"""Edits mode and output hygiene as pure logic: parsing answers defensively (malformed, truncated,
hostile), applying edits without ever changing a word (property-tested), Vietnamese casing, the
sentence-start rule, and cleaning model text."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from omoai_llm.alignment import split_token
from omoai_llm.edits import (
    KEYS,
    Edits,
    apply_edits,
    capitalise,
    capitalise_sentence_starts,
    edits_schema,
    numbered,
    parse_edits,
    upper,
)
from omoai_llm.hygiene import clean_model_text

WORDS = "hôm nay đài vtv đưa tin về đà nẵng".split()


def _keys(words: list[str]) -> list[str]:
    return [split_token(w).key for w in words]


def test_numbered_words_and_a_schema_with_every_key_bounded_by_the_chunk():
    assert numbered(["xin", "chào"]) == "1:xin 2:chào"
    schema = edits_schema(9)
    assert set(schema["properties"]) == set(KEYS) and schema["additionalProperties"] is False
    assert "required" not in schema  # only the edits there are
    assert all(p["items"]["maximum"] == 9 and p["maxItems"] == 9 for p in schema["properties"].values())


def test_an_answer_sets_marks_and_casing_and_the_strongest_mark_wins():
    answer = json.dumps({"period": [2, 9], "comma": [2], "question": [], "capital": [3, 8, 9], "upper": [4]})
    edits, outcome = parse_edits(answer, len(WORDS))
    assert outcome == "partial"  # the comma on word 2 lost to its period
    assert edits is not None
    out = capitalise_sentence_starts(apply_edits(WORDS, edits))
    assert " ".join(out) == "Hôm nay. Đài VTV đưa tin về Đà Nẵng."


def test_a_chatty_fenced_answer_is_still_read():
    edits, outcome = parse_edits('Here you go:\n```json\n{"period": [9], "comma": [],}\n```', len(WORDS))
    assert outcome == "ok" and edits is not None and edits.marks == {8: "."}


def test_malformed_and_truncated_answers_are_not_used():
    for text in ("", "no json at all", "[1, 2, 3]", '"period"', '{"words": ["a"]}', "{"):
        assert parse_edits(text, 5) == (None, "malformed"), text
    edits, outcome = parse_edits("{}", 5)  # nothing to edit is an answer too
    assert outcome == "ok" and edits == Edits()
    assert parse_edits('{"period": [1]}', 5, truncated=True) == (None, "truncated")


def test_hostile_entries_are_dropped_and_counted():
    answer = json.dumps(
        {
            "period": [3, 0, -1, 6, 1e9, True, "2", "x", "²", "٣", None, [1]],
            "comma": "1,2",
            "capital": list(range(1, 100_000)),
        }
    )
    edits, outcome = parse_edits(answer, 5)
    assert outcome == "partial" and edits is not None
    assert edits.marks == {1: ".", 2: "."}  # "2" (a numeric string) and 3 only
    assert set(edits.cases) == {0, 1, 2, 3, 4}
    assert edits.dropped > 99_000


def test_vietnamese_casing_keeps_diacritics_and_marks_around_words():
    assert capitalise("đà") == "Đà" and capitalise("ơn") == "Ơn" and capitalise("ước") == "Ước"
    assert capitalise("«ông") == "«Ông" and capitalise("123") == "123"
    assert upper("vtv") == "VTV" and upper("đh,") == "ĐH,"
    assert capitalise_sentence_starts(["a.", "b", "c?", "đi", "e!", "…", "f"]) == [
        "A.",
        "B",
        "c?",
        "Đi",
        "e!",
        "…",
        "F",
    ]


_letters = st.text(alphabet="aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạđĐÀÁẢÃẠỲỸ.,?!«»-%0", min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(_letters.filter(lambda w: w.strip() == w and w), min_size=1, max_size=30),
    answer=st.dictionaries(
        st.sampled_from([*KEYS, "junk"]),
        st.lists(st.one_of(st.integers(-5, 40), st.text(max_size=3), st.booleans(), st.none()), max_size=40),
    ),
    truncated=st.booleans(),
)
def test_whatever_the_answer_the_words_out_are_the_words_in(words, answer, truncated):
    edits, _ = parse_edits(json.dumps(answer), len(words), truncated=truncated)
    out = capitalise_sentence_starts(apply_edits(words, edits))
    assert len(out) == len(words) and _keys(out) == _keys(words)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_model_text_comes_out_without_controls_or_broken_sequences(text):
    clean, removed = clean_model_text(text)
    assert "\ufffd" not in clean and "\u202e" not in clean
    assert all(ch in "\n\t" or ord(ch) >= 32 and not 0x7F <= ord(ch) < 0xA0 for ch in clean)
    assert removed >= 0


def test_hygiene_keeps_layout_and_counts_what_it_removed():
    clean, removed = clean_model_text("Tóm tắt\x00\x1b[31m:\r\nmột\ufffd\ufffd ý\u202e chính\tđây")
    assert clean == "Tóm tắt[31m:\nmột ý chính\tđây" and removed == 5
    assert clean_model_text("Tie\u0302\u0301ng") == ("Tiếng", 0)  # NFC


def test_no_edits_leave_the_words_as_they_came():
    assert apply_edits(WORDS, None) == WORDS and apply_edits(WORDS, Edits()) == WORDS
