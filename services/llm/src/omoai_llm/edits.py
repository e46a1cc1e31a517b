"""Edits mode: the model is shown the chunk's words numbered and answers only *which* word takes
which mark and which casing, never the text itself; the words of the output are the input's by
construction (only a mark after a word and the case of its letters can change).

The answer is one JSON object of word numbers per edit::

    {"period": [7, 19], "comma": [3], "capital": [12], "upper": [15]}

Keys with nothing to list are left out (``{}``: no edits). A list of numbers per mark costs two to
three tokens per edited word (a rewrite costs every word again), and its shape is a JSON Schema the
backends enforce where they can (:func:`edits_schema`).
The first word of the transcript and each word after ``.``, ``?`` or ``!`` are capitalised by
rule (:func:`capitalise_sentence_starts`), so the model lists only names and acronyms.

An answer that is not such an object (malformed, hostile) or was cut off by the token limit
(truncated: later edits are missing and earlier ones may be half a thought) is not used: that
chunk keeps its words as they came (then the sentence-start rule). Entries that are not word
numbers of the chunk (strings, out of range, duplicates beyond one mark per word) are dropped and
the answer counts as ``partial``. Falling back to the words, not to a rewrite, keeps the cost
bounded and the words safe; every outcome is counted (``omoai_llm_edit_answers_total``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from omoai_llm.alignment import split_token
from omoai_llm.backends.base import JsonSchema
from omoai_llm.parsing import extract_json

#: Answer keys for marks, in the order a word keeps only one (the strongest sentence end first).
MARK_KEYS: dict[str, str] = {"question": "?", "exclamation": "!", "period": ".", "colon": ":", "comma": ","}
CASE_KEYS: tuple[str, ...] = ("upper", "capital")
KEYS: tuple[str, ...] = (*MARK_KEYS, *CASE_KEYS)
SENTENCE_END = frozenset(".?!")

Outcome = Literal["ok", "partial", "malformed", "truncated"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "partial", "malformed", "truncated")
Case = Literal["capital", "upper"]


def edits_schema(words: int) -> JsonSchema:
    """The answer's shape for a chunk of ``words`` words (numbers 1..words, each listed once)."""
    numbers = {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": max(1, words)},
        "maxItems": max(1, words),
    }
    # No key is required: an answer lists only the edits there are (``{}`` when the chunk needs none).
    return {"type": "object", "properties": {key: numbers for key in KEYS}, "additionalProperties": False}


def numbered(words: Sequence[str]) -> str:
    """The user message: ``1:xin 2:chào ...`` (numbers from 1, as people count)."""
    return " ".join(f"{i}:{w}" for i, w in enumerate(words, 1))


@dataclass
class Edits:
    """Per word index (0-based): the mark after it and its case."""

    marks: dict[int, str] = field(default_factory=dict)
    cases: dict[int, Case] = field(default_factory=dict)
    dropped: int = 0  # entries that were not usable word numbers


def _index(value: Any, words: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):  # not "²" (a digit to str.isdigit)
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= words:
        return value - 1
    return None


def parse_edits(text: str, words: int, *, truncated: bool = False) -> tuple[Edits | None, Outcome]:
    """The edits of an answer for a chunk of ``words`` words, or None when it cannot be used."""
    if truncated:
        return None, "truncated"
    data = extract_json(text) if text.strip() != "{}" else {}
    if not isinstance(data, dict) or (data and not any(k in data for k in KEYS)):
        return None, "malformed"
    edits = Edits()
    for key in KEYS:
        values = data.get(key)
        if values is None:
            continue
        if not isinstance(values, list):
            edits.dropped += 1
            continue
        for value in values[: words * 2]:  # a hostile answer may list millions of entries
            i = _index(value, words)
            if i is None:
                edits.dropped += 1
            elif key in MARK_KEYS:
                if i in edits.marks:  # one mark per word: the first (strongest) key wins
                    edits.dropped += 1
                else:
                    edits.marks[i] = MARK_KEYS[key]
            elif i not in edits.cases:
                edits.cases[i] = "upper" if key == "upper" else "capital"
        if isinstance(values, list) and len(values) > words * 2:
            edits.dropped += len(values) - words * 2
    return edits, "partial" if edits.dropped else "ok"


def capitalise(word: str) -> str:
    """The first letter in upper case (``đà`` -> ``Đà``); marks around the word stay."""
    t = split_token(word)
    for j, ch in enumerate(t.core):
        if ch.isalpha():
            return t.lead + t.core[:j] + ch.upper() + t.core[j + 1 :] + t.trail
    return word


def upper(word: str) -> str:
    t = split_token(word)
    return t.lead + t.core.upper() + t.trail


def with_mark(word: str, mark: str) -> str:
    """``word`` followed by ``mark``, unless it already ends with punctuation (its own stays)."""
    t = split_token(word)
    if not t.core or t.trail:
        return word
    return word + mark


def apply_edits(words: Sequence[str], edits: Edits | None) -> list[str]:
    """The words with their edits: the same words (same letters up to case), in order."""
    out = list(words)
    if edits is None:
        return out
    for i, case in edits.cases.items():
        out[i] = upper(out[i]) if case == "upper" else capitalise(out[i])
    for i, mark in edits.marks.items():
        out[i] = with_mark(out[i], mark)
    return out


def capitalise_sentence_starts(words: list[str]) -> list[str]:
    """The first word and every word after one ending a sentence, capitalised (in place, returned)."""
    start = True
    for i, w in enumerate(words):
        if start:
            words[i] = capitalise(w)
        t = split_token(words[i])
        start = bool(t.trail) and t.trail[-1] in SENTENCE_END if t.core else start
    return words


def edits_of(reference: Sequence[str]) -> dict[str, list[int]]:
    """The ideal answer for a chunk whose punctuated, cased form is ``reference``: what a perfect
    model returns (benchmarks and the quality harness use it). Sentence starts are left to the rule."""
    answer: dict[str, list[int]] = {key: [] for key in KEYS}  # emptied keys are dropped at the end
    marks = {mark: key for key, mark in MARK_KEYS.items()}
    start = True
    for n, word in enumerate(reference, 1):
        t = split_token(word)
        letters = [c for c in t.core if c.isalpha()]
        if letters and len(letters) > 1 and all(c.isupper() for c in letters):
            answer["upper"].append(n)
        elif letters and t.core[0].isupper() and not start:
            answer["capital"].append(n)
        mark = t.trail[-1:] if t.trail else ""
        if mark in marks:
            answer[marks[mark]].append(n)
        if t.core:
            start = mark in SENTENCE_END
    return {key: numbers for key, numbers in answer.items() if numbers}
