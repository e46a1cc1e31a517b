"""Output hygiene: what a model generates is cleaned before it reaches any output.

Byte-level tokenizers decode a cut multi-byte sequence to U+FFFD, and a random or confused model
emits control characters, lone surrogates and bidirectional overrides (which make a transcript
display differently from what it holds). :func:`clean_model_text` removes them all; tabs and
newlines stay, and the text is put in NFC so that the alignment compares like with like.
"""

from __future__ import annotations

import unicodedata

#: Kept although they are control characters: layout a summary may use.
_KEPT = frozenset("\n\t")
#: Format characters that reorder what a reader sees (Trojan Source): never from a model.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
#: Unicode categories dropped: controls, surrogates, private use, unassigned.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})


def _dropped(ch: str) -> bool:
    if ch in _KEPT:
        return False
    return ch == "\ufffd" or ch in _BIDI or unicodedata.category(ch) in _DROPPED_CATEGORIES


def clean_model_text(text: str) -> tuple[str, int]:
    """``text`` without control characters, broken sequences (U+FFFD), lone surrogates, private-use
    and unassigned code points or bidi overrides, in NFC; and how many characters were removed.
    A carriage return becomes a newline (a model's CRLF is a line break, not a control code)."""
    if not text:
        return "", 0
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if not _dropped(ch))
    removed = len(text) - len(kept)
    try:
        return unicodedata.normalize("NFC", kept), removed
    except UnicodeError:  # pragma: no cover - lone surrogates were removed above
        return kept, removed
