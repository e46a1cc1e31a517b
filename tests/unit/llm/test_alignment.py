"""Alignment with adversarial model outputs: no input word is ever lost, reordered or changed
beyond punctuation and case under the strict policy."""

from __future__ import annotations

import random

import pytest
from omoai_llm.alignment import align_words, apply_case, split_token, tokens_of_answer

WORDS = ["xin", "chào", "các", "bạn", "hôm", "nay", "chúng", "ta", "nói", "về", "trí", "tuệ", "nhân", "tạo"]


def keys(words: list[str]) -> list[str]:
    return [split_token(w).core.casefold() for w in words]


def assert_lossless(src: list[str], out: list[str]) -> None:
    assert len(out) == len(src)
    assert keys(out) == keys(src)


def test_a_faithful_answer_gives_its_punctuation_and_case():
    answer = "Xin chào các bạn! Hôm nay, chúng ta nói về trí tuệ nhân tạo."
    r = align_words(WORDS, answer)
    assert " ".join(r.words) == answer
    assert r.stats.matched == len(WORDS) and r.stats.model_word_errors == 0


def test_dropped_words_come_back_without_punctuation():
    answer = "Xin chào các bạn. Chúng ta nói về trí tuệ."  # "hôm nay" and "nhân tạo" dropped
    r = align_words(WORDS, answer)
    assert_lossless(WORDS, r.words)
    assert r.words[4:6] == ["hôm", "nay"]
    assert r.words[-2:] == ["nhân", "tạo"]
    assert r.stats.restored == 4


def test_invented_words_are_dropped_and_their_sentence_end_kept():
    answer = "Xin chào tất cả các bạn thân mến. Hôm nay chúng ta sẽ nói về trí tuệ nhân tạo hiện đại."
    r = align_words(WORDS, answer)
    assert_lossless(WORDS, r.words)
    assert r.words[-1] == "tạo."
    assert r.stats.invented >= 5


def test_rewritten_words_keep_the_input_word_in_strict_mode():
    src = ["the", "quick", "brown", "fox", "jumps"]
    r = align_words(src, "The fast brown fox leaps.")
    assert r.words == ["The", "quick", "brown", "fox", "jumps."]
    assert r.stats.replaced == 2


def test_lenient_policy_accepts_spelling_fixes_only():
    src = ["toi", "dang", "hoc", "machin", "lerning", "o", "truong"]
    r = align_words(src, "Tôi đang học machine learning ở trường.", policy="lenient")
    assert r.words == ["Tôi", "đang", "học", "machine", "learning", "ở", "trường."]
    assert r.stats.spelling_fixes == 7  # every word differs from the input by marks or a letter
    assert r.stats.output_word_errors == 7  # ... and the quality numbers say so
    # A rewrite to a different word is still refused.
    r2 = align_words(["con", "mèo"], "Con chó.", policy="lenient")
    assert r2.words == ["Con", "mèo."]


def test_strict_policy_never_changes_vietnamese_diacritics():
    src = ["ma", "má", "mà", "mả", "mã", "mạ", "đi"]
    answer = "Mà mạ ma má mã mả di."  # tones shuffled, đ -> d
    r = align_words(src, answer)
    assert keys(r.words) == src
    assert all(split_token(w).core.lower() == s for w, s in zip(r.words, src, strict=True))


def test_case_comes_from_the_model_only_for_the_same_letters():
    assert apply_case("đà", "Đà") == "Đà"
    assert apply_case("straße", "STRASSE") == "straße"  # casefold-equal, letters differ: keep ours
    assert apply_case("nẵng", "NẴNG") == "NẴNG"


@pytest.mark.parametrize("answer", ["", "   ", "\n\n"])
def test_an_empty_answer_keeps_every_word(answer):
    r = align_words(WORDS, answer)
    assert r.words == WORDS
    assert r.stats.restored == len(WORDS)


def test_a_truncated_answer_keeps_the_tail_unpunctuated():
    r = align_words(WORDS, "Xin chào các bạn. Hôm nay, chúng")
    assert_lossless(WORDS, r.words)
    assert r.words[:7] == ["Xin", "chào", "các", "bạn.", "Hôm", "nay,", "chúng"]
    assert r.words[7:] == WORDS[7:]


def test_chatter_around_the_answer_is_ignored():
    src = ["the", "cat", "sat", "on", "the", "mat"]
    answer = "Sure! Here is the punctuated text:\n\nThe cat sat on the mat.\n\nLet me know if you need anything else."
    from omoai_llm.parsing import clean_answer

    r = align_words(src, clean_answer(answer))
    assert r.words == ["The", "cat", "sat", "on", "the", "mat."]


def test_reordered_answer_keeps_input_order():
    src = ["one", "two", "three", "four", "five", "six"]
    r = align_words(src, "Four five six, one two three.")
    assert_lossless(src, r.words)


def test_separated_punctuation_attaches_to_its_neighbours():
    assert [t.text for t in tokens_of_answer("hello , world ! « quoted » end")] == [
        "hello,",
        "world!",
        "«quoted»",
        "end",
    ]


def test_input_words_with_inner_punctuation_and_symbols_survive():
    src = ["giá", "3.5%", "e-mail", "không?", "ok"]
    r = align_words(src, "Giá 3.5% e-mail không? OK!")
    assert r.words == ["Giá", "3.5%", "e-mail", "không?", "OK!"]
    r = align_words(src, "")
    assert r.words == src


def test_gibberish_from_a_random_model_cannot_lose_a_word():
    rng = random.Random(7)
    alphabet = list("abcdeđơưáàạ.,!?;:-\"' ") + ["\ufffd", "\x14", "\n"]
    for _ in range(200):
        src = [rng.choice(WORDS) for _ in range(rng.randint(1, 30))]
        answer = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        if rng.random() < 0.5:  # mix real words in, shuffled, with punctuation
            mixed = [w + rng.choice(["", ",", ".", "?"]) for w in src if rng.random() < 0.7]
            rng.shuffle(mixed)
            answer = " ".join(mixed) + " " + answer
        lenient = align_words(src, answer, policy="lenient")
        assert len(lenient.words) == len(src)  # one word per input word even when spelling is taken
        r = align_words(src, answer, policy="strict")
        assert_lossless(src, r.words)
        assert all(w.strip() == w and w for w in r.words)


def test_quality_numbers_describe_the_model_and_the_output():
    r = align_words(WORDS, "Xin chào các bạn.")
    assert r.stats.output_word_errors == 0  # strict output: the input words exactly
    assert r.stats.model_word_errors == len(WORDS) - 4
    assert r.stats.model_char_errors > 0 and r.stats.output_char_errors == 0


def test_fallback_segments_name_the_segments_where_the_model_was_overruled():
    src = ["a1", "a2", "b1", "b2"]
    r = align_words(src, "A1 a2. B1", segment_of=[0, 0, 1, 1])
    assert r.stats.fallback_segments == {1}


def test_word_and_char_errors_count_edits():
    from omoai_llm.alignment import word_and_char_errors

    assert word_and_char_errors(["a", "b"], ["a", "b"]) == (0, 0)
    assert word_and_char_errors(["con", "mèo", "đen"], ["con", "mẹo", "đen"]) == (1, 1)
    assert word_and_char_errors(["xin", "chào"], ["xin"]) == (1, 5)  # " chào"
    assert word_and_char_errors(["xin"], ["xin", "chào", "bạn"]) == (2, 9)  # " chào bạn"


def test_markdown_and_markup_from_the_model_never_reach_the_text():
    src = ["xin", "chào", "các", "bạn"]
    r = align_words(src, "**Xin chào** các `bạn`!!!!!!! #")
    assert r.words == ["Xin", "chào", "các", "bạn!!!"]
    r = align_words(src, "<b>Xin</b> chào các bạn.")
    assert r.words == ["xin", "chào", "các", "bạn."]  # the tagged word did not match: kept as it came


def test_marks_a_model_is_not_trusted_with_stay_as_the_input_had_them():
    src = ["#omoai", "tăng", "50%", "R&D", "**quan", "trọng**"]
    r = align_words(src, "omoai tăng 50 R&D, quan trọng.")
    assert r.words[0] == "#omoai" and r.words[2] == "50%" and r.words[3] == "R&D,"
    assert r.words[4:] == ["**quan", "trọng**"]


def test_a_window_returns_and_counts_only_its_own_words():
    r = align_words(["a", "b", "c", "d"], "A, b X c. D", window=range(1, 3))
    assert r.words == ["b", "c."]
    assert (r.stats.words_in, r.stats.matched, r.stats.invented) == (2, 2, 1)  # X is inside the window
    r = align_words(["a", "b", "c", "d"], "Y a b c d Z", window=range(1, 3))
    assert r.stats.invented == 0  # Y and Z belong to the neighbours' edges
    r = align_words(["a", "b", "c", "d"], "a c d", window=range(1, 3))
    assert r.words == ["b", "c"] and r.stats.restored == 1 and r.stats.model_word_errors == 1
