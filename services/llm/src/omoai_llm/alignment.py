"""Aligning what a model returned to the words that went in: the guarantee that punctuation never
loses a word.

Every input word is split into leading punctuation, a core and trailing punctuation; its matching
key is the NFC, casefolded core (diacritics are kept: "ma", "má" and "mà" are different words).
The model's answer is split the same way and the two key sequences are aligned with difflib.

- ``equal``: the input word, with the model's punctuation and the model's letter case (taken only
  when the letters are the same up to case, character by character).
- ``replace`` (the model rewrote words): the input words stay; the model's punctuation at the edges
  of the block is kept. The lenient policy accepts a one-to-one replacement that is a spelling fix
  (same word without tone marks, or close in characters).
- ``delete`` (the model dropped words, or stopped early): the input words come back as they were.
- ``insert`` (the model invented words or chatted): dropped; a sentence end they carried moves to
  the word before.

So under the strict policy, whatever the model returns, the output has exactly the input words in
order (a final check enforces it word by word), each segment keeps its own words and its times,
and only punctuation and case differ.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz.distance import Indel, Levenshtein

Policy = Literal["strict", "lenient"]

_SENTENCE_END = frozenset(".!?…。")

#: Marks a model may add around words. Markdown and markup (``* # _ ` ~ | < > \\``) and other
#: oddities are punctuation to Unicode but not to a reader: they are never taken from the model.
MODEL_MARKS = frozenset(".,;:!?…-–—'\"“”‘’()[]«»/¿¡、。，；：！？")


def clean_marks(marks: str) -> str:
    """Only reader punctuation, and no run of one mark longer than three (``"..."`` stays)."""
    kept = "".join(c for c in marks if c in MODEL_MARKS)
    return re.sub(r"(.)\1{3,}", r"\1\1\1", kept)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


#: Punctuation to Unicode that belongs to the word it touches ("50%", "R&D", "@user").
_WORD_MARKS = frozenset("%‰‱&@")


def is_punct(ch: str) -> bool:
    """Punctuation in the Unicode sense (categories P*), except marks that are part of a word;
    symbols such as $ or + are word material too."""
    return ch not in _WORD_MARKS and unicodedata.category(ch).startswith("P")


def _marks(source: str, model: str) -> str:
    """The model's marks, unless the input word carries marks a model is never trusted with
    (``#`` of a hashtag, ``*``): those stay as they came."""
    return source if any(c not in MODEL_MARKS for c in source) else model


@dataclass(frozen=True)
class Token:
    lead: str
    core: str
    trail: str

    @property
    def key(self) -> str:
        return self.core.casefold() if self.core else (self.lead + self.trail)

    @property
    def text(self) -> str:
        return self.lead + self.core + self.trail


def split_token(raw: str) -> Token:
    """``"«Xin"`` -> ("«", "Xin", ""); ``"3.5%,"`` -> ("", "3.5%", ","); ``"..."`` -> ("...", "", "")."""
    i, j = 0, len(raw)
    while i < j and is_punct(raw[i]):
        i += 1
    while j > i and is_punct(raw[j - 1]):
        j -= 1
    return Token(raw[:i], raw[i:j], raw[j:])


def words_of(text: str) -> list[str]:
    """Whitespace-separated words of an input text, NFC-normalised."""
    return nfc(text).split()


def tokens_of_answer(text: str) -> list[Token]:
    """The model's words. Punctuation standing alone (``"hello , world"``) joins its neighbours."""
    out: list[Token] = []
    pending_lead = ""
    for raw in nfc(text).split():
        tok = split_token(raw)
        tok = Token(clean_marks(tok.lead), tok.core, clean_marks(tok.trail))
        if not tok.core:
            # Opening marks go to the next word, everything else to the previous one.
            if out and not all(c in "([{«“‘¿¡\"'" for c in tok.lead):
                prev = out[-1]
                out[-1] = Token(prev.lead, prev.core, prev.trail + tok.lead)
            else:
                pending_lead += tok.lead
            continue
        if pending_lead:
            tok = Token(pending_lead + tok.lead, tok.core, tok.trail)
            pending_lead = ""
        out.append(tok)
    return out


def apply_case(word: str, model: str) -> str:
    """``word`` with ``model``'s letter case, only when the letters are the same up to case."""
    if word == model or len(word) != len(model):
        return word
    for a, b in zip(word, model, strict=True):
        if a != b and a.lower() != b.lower() and a.upper() != b.upper():
            return word
    return model


def _strip_marks(s: str) -> str:
    decomposed = unicodedata.normalize("NFD", s.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))


def is_spelling_fix(word: str, model: str) -> bool:
    """Lenient policy: the same word with other tone marks, or a near miss (one or two letters)."""
    a, b = word.casefold(), model.casefold()
    if not a or not b or not any(c.isalpha() for c in b):
        return False
    if _strip_marks(a) == _strip_marks(b):
        return True
    # 2 x longest common subsequence / total length: difflib's ratio, exact (never below it).
    return min(len(a), len(b)) >= 4 and Indel.normalized_similarity(a, b) >= 0.8


@dataclass
class AlignmentStats:
    """How far the model strayed and what the alignment did about it."""

    words_in: int = 0
    words_out: int = 0
    matched: int = 0  # model word kept (punctuation and case taken)
    replaced: int = 0  # model rewrote the word; the input word kept
    spelling_fixes: int = 0  # lenient: the model's spelling taken
    restored: int = 0  # model dropped the word; put back
    invented: int = 0  # model words with no input counterpart; dropped
    model_word_errors: int = 0  # edit operations between input and the model's words
    model_words: int = 0
    output_word_errors: int = 0  # edit operations between input and the output words
    chars_in: int = 0
    model_char_errors: int = 0
    output_char_errors: int = 0
    fallback_segments: set[int] = field(default_factory=set)

    def merge(self, other: AlignmentStats) -> None:
        for name in (
            "words_in",
            "words_out",
            "matched",
            "replaced",
            "spelling_fixes",
            "restored",
            "invented",
            "model_word_errors",
            "model_words",
            "output_word_errors",
            "chars_in",
            "model_char_errors",
            "output_char_errors",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.fallback_segments |= other.fallback_segments


def edit_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """The Levenshtein distance (substitutions + deletions + insertions) of two sequences: of
    characters (two strings) or of words (two lists). rapidfuzz computes it exactly, 170-450x faster
    than the difflib upper bound this replaced (docs/benchmarks.md)."""
    return int(Levenshtein.distance(ref, hyp))


def word_and_char_errors(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int]:
    """Word errors, and character errors counted inside the differing word blocks only.

    Characters of matching words agree by construction, so comparing each differing block's
    characters (with the spaces between words) gives the character edit count without running
    a character-level alignment over the whole chunk (which dominated the service's own cost).
    """
    if list(ref) == list(hyp):
        return 0, 0
    words = chars = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        words += max(i2 - i1, j2 - j1)
        a, b = " ".join(ref[i1:i2]), " ".join(hyp[j1:j2])
        # A block added or removed also adds or removes the space that separated it.
        chars += edit_errors(a, b) + (1 if (not a or not b) and (a or b) else 0)
    return words, chars


@dataclass(frozen=True)
class AlignedWords:
    words: list[str]  # one output word per input word of the window, same order
    stats: AlignmentStats


def align_words(
    input_words: Sequence[str],
    answer: str,
    *,
    policy: Policy = "strict",
    segment_of: Sequence[int] | None = None,
    window: range | None = None,
) -> AlignedWords:
    """Map the model's ``answer`` onto ``input_words``; returns exactly one output word per input word.

    ``window`` (default: all) selects the input words that are returned and counted: the others
    are context the model saw around them (so that a chunk does not end its last sentence early).
    ``segment_of[i]`` names the segment of input word ``i`` (for counting fallback segments).
    """
    a = _Alignment.start([split_token(nfc(w)) for w in input_words], tokens_of_answer(answer), policy)
    a.map_answer()
    return a.tally(window, segment_of)


Outcome = Literal["", "matched", "replaced", "spelling_fix", "restored"]


@dataclass
class _Alignment:
    """The alignment of one answer, per input word ``i``: its output word, what happened to it, and
    the model's word and character errors charged to it; ``gap_*[g]`` are invented before word g."""

    src: list[Token]
    hyp: list[Token]
    policy: Policy
    out: list[str | None]
    outcome: list[Outcome]
    word_cost: list[int]
    char_cost: list[int]
    gap_words: list[int]  # g = n: after the last word
    gap_chars: list[int]

    @classmethod
    def start(cls, src: list[Token], hyp: list[Token], policy: Policy) -> _Alignment:
        n = len(src)
        return cls(src, hyp, policy, [None] * n, [""] * n, [0] * n, [0] * n, [0] * (n + 1), [0] * (n + 1))

    @property
    def src_keys(self) -> list[str]:
        return [t.key for t in self.src]

    # -- mapping the answer ------------------------------------------------------------------------
    def map_answer(self) -> None:
        src_keys, hyp_keys = self.src_keys, [t.key for t in self.hyp]
        matcher = difflib.SequenceMatcher(None, src_keys, hyp_keys, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                self._equal(i1, i2, j1)
            elif op == "delete":
                self._delete(i1, i2)
            elif op == "insert":
                self.gap_words[i1] += j2 - j1
                self.gap_chars[i1] += len(" ".join(hyp_keys[j1:j2])) + 1
                _move_sentence_end(self.out, i1, self.hyp[j2 - 1])
            elif i2 - i1 == j2 - j1:
                self._replace_one_to_one(i1, i2, j1)
            else:
                self._replace_block(i1, i2, j1, j2)

    def _keep_input(self, i: int, lead: str = "", trail: str = "") -> None:
        t = self.src[i]
        if t.core:
            self.out[i] = _marks(t.lead, lead or t.lead) + t.core + _marks(t.trail, trail or t.trail)
        else:
            self.out[i] = t.text  # a punctuation-only input "word" survives as it was

    def _equal(self, i1: int, i2: int, j1: int) -> None:
        for k in range(i2 - i1):
            s, h = self.src[i1 + k], self.hyp[j1 + k]
            self.out[i1 + k] = (
                _marks(s.lead, h.lead) + apply_case(s.core, h.core) + _marks(s.trail, h.trail) if s.core else s.text
            )
            self.outcome[i1 + k] = "matched"

    def _delete(self, i1: int, i2: int) -> None:
        for i in range(i1, i2):
            self._keep_input(i)
            self.outcome[i], self.word_cost[i], self.char_cost[i] = "restored", 1, len(self.src[i].key) + 1

    def _replace_one_to_one(self, i1: int, i2: int, j1: int) -> None:
        for k in range(i2 - i1):
            i, h = i1 + k, self.hyp[j1 + k]
            self.word_cost[i], self.char_cost[i] = 1, edit_errors(self.src[i].key, h.key)
            if self.policy == "lenient" and self.src[i].core and is_spelling_fix(self.src[i].core, h.core):
                self.out[i] = h.lead + h.core + h.trail
                self.outcome[i] = "spelling_fix"
            else:
                self._keep_input(i, h.lead, h.trail)
                self.outcome[i] = "replaced"

    def _replace_block(self, i1: int, i2: int, j1: int, j2: int) -> None:
        n_hyp = j2 - j1
        for k, i in enumerate(range(i1, i2)):
            self._keep_input(i)
            self.outcome[i] = "replaced" if k < n_hyp else "restored"
            self.word_cost[i] = 1
        self.word_cost[i1] += max(0, n_hyp - (i2 - i1))
        self.char_cost[i1] = edit_errors(
            " ".join(t.key for t in self.src[i1:i2]), " ".join(t.key for t in self.hyp[j1:j2])
        )
        # The block's outer punctuation (an opening quote, a sentence end) is still right.
        first, last = self.src[i1], self.src[i2 - 1]
        if first.core:
            self.out[i1] = _marks(first.lead, self.hyp[j1].lead) + (self.out[i1] or "")[len(first.lead) :]
        if last.core:
            base = self.out[i2 - 1] or last.text
            self.out[i2 - 1] = base[: len(base) - len(last.trail)] + _marks(last.trail, self.hyp[j2 - 1].trail)

    # -- counting ----------------------------------------------------------------------------------
    def tally(self, window: range | None, segment_of: Sequence[int] | None) -> AlignedWords:
        """The output words of ``window`` (all by default) and what the alignment counted in it."""
        n = len(self.src)
        src_keys = self.src_keys
        win = window if window is not None else range(n)
        words: list[str] = []
        stats = AlignmentStats(words_in=len(win), model_words=len(self.hyp) if window is None else 0)
        touched: set[int] = set()
        for i in win:
            w = self.out[i]
            if w is None or (self.policy == "strict" and split_token(w).key != src_keys[i]) or not w.strip():
                # Defensive: the guarantee holds word by word even if the logic above had a hole.
                w = self.src[i].text
                self.outcome[i] = self.outcome[i] if self.outcome[i] != "matched" else "replaced"
            words.append(w)
            kind = self.outcome[i]
            if kind == "matched":
                stats.matched += 1
            elif kind == "spelling_fix":
                stats.spelling_fixes += 1
            elif kind == "replaced":
                stats.replaced += 1
                touched.add(i)
            else:
                stats.restored += 1
                touched.add(i)
            stats.model_word_errors += self.word_cost[i]
            stats.model_char_errors += self.char_cost[i]
            out_key = split_token(w).key
            if out_key != src_keys[i]:
                stats.output_word_errors += 1
                stats.output_char_errors += edit_errors(src_keys[i], out_key)
        # Invented words between two words of the window (or at an outer edge of the whole input).
        for g in range(win.start, win.stop + 1):
            inner = win.start < g < win.stop or (g == win.start == 0) or (g == win.stop == n)
            if inner or (len(win) == n):
                stats.invented += self.gap_words[g]
                stats.model_word_errors += self.gap_words[g]
                stats.model_char_errors += self.gap_chars[g]
        # Extra words of an unequal replace block: counted as invented too.
        stats.invented += sum(max(0, c - 1) for c in (self.word_cost[i] for i in win) if c > 1)
        if window is not None:
            stats.model_words = stats.matched + stats.replaced + stats.spelling_fixes + stats.invented
        stats.words_out = len(words)
        stats.chars_in = len(" ".join(src_keys[i] for i in win))
        if segment_of is not None:
            stats.fallback_segments = {segment_of[i] for i in touched}
        return AlignedWords(words, stats)


def _move_sentence_end(out: list[str | None], before: int, last_invented: Token) -> None:
    """An invented tail such as ``"... home today."`` still ends the sentence at ``home``."""
    if before == 0:
        return
    prev = out[before - 1]
    end = "".join(c for c in last_invented.trail if c in _SENTENCE_END)
    if prev is None or not end:
        return
    prev_tok = split_token(prev)
    if not prev_tok.trail:
        out[before - 1] = prev + end
