"""What a tagger's labels mean, and applying them to words without ever changing a word.

Two label vocabularies are understood:

- **Seq2Labels (GECToR)**, as in ``vocabulary/labels.txt`` of ``dragonSwing/vibert-capu`` and
  ``xlm-roberta-capu``: ``$KEEP``; ``$APPEND_<mark>`` for ``, . : ? ! ;``; ``$TRANSFORM_CASE_CAPITAL``,
  ``_UPPER``, ``_LOWER``, ``_CAPITAL_1`` (second letter up: ``iPhone``) and ``_UPPER_-1`` (all but
  the last letter up). Labels that change words (``$TRANSFORM_VERB_*``: number words to digits,
  ``$MERGE_*``: joining two words, ``$REPLACE_*``, ``$DELETE``, ``$APPEND_<word>``) are **never
  applied**: the word stays as it came and the label is counted as ``refused``.
- **Plain token classification** (``AutoModelForTokenClassification``, labels in ``id2label``): a
  label is one or more parts joined by ``|`` (``CAPITAL|.``, ``UPPER``, ``O``). A part is a case
  (``KEEP``/``O``/``NONE``, ``CAPITAL``, ``UPPER``, ``LOWER``), a mark (``.`` ``,`` ``?`` ``:``
  ``!`` ``;`` or its name ``PERIOD`` ``COMMA`` ``QUESTION`` ``COLON`` ``EXCLAMATION``
  ``SEMICOLON``), or one of the Seq2Labels names above. Anything else is refused.

A word keeps its letters up to case (the same casefolded key) whatever the labels say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from omoai_llm.alignment import split_token
from omoai_llm.edits import capitalise, upper, with_mark

Case = Literal["", "capital", "upper", "lower", "capital_1", "upper_-1"]

MARKS = frozenset(".,?:!;")
_MARK_NAMES = {"PERIOD": ".", "COMMA": ",", "QUESTION": "?", "COLON": ":", "EXCLAMATION": "!", "SEMICOLON": ";"}
_CASES: dict[str, Case] = {
    "KEEP": "",
    "O": "",
    "NONE": "",
    "$KEEP": "",
    "CAPITAL": "capital",
    "UPPER": "upper",
    "LOWER": "lower",
    "$TRANSFORM_CASE_CAPITAL": "capital",
    "$TRANSFORM_CASE_UPPER": "upper",
    "$TRANSFORM_CASE_LOWER": "lower",
    "$TRANSFORM_CASE_CAPITAL_1": "capital_1",
    "$TRANSFORM_CASE_UPPER_-1": "upper_-1",
}
#: Seq2Labels entries that are bookkeeping, not edits.
_NOOP = frozenset({"@@UNKNOWN@@", "@@PADDING@@"})


@dataclass(frozen=True)
class Action:
    """What one label does to a word: a case change and/or a mark after it; ``refused`` when the
    label would change the word itself (or is unknown) and is therefore ignored."""

    case: Case = ""
    mark: str = ""
    refused: bool = False

    @property
    def noop(self) -> bool:
        return not self.case and not self.mark


KEEP = Action()


def action_of(label: str) -> Action:
    """The action of one label name (either vocabulary)."""
    label = label.strip()
    if label in _NOOP:
        return KEEP
    case: Case = ""
    mark = ""
    for part in label.split("|"):
        part = part.strip()
        key = part.upper() if not part.startswith("$") else part
        if key in _CASES:
            case = _CASES[key] or case
        elif part in MARKS:
            mark = part
        elif key in _MARK_NAMES:
            mark = _MARK_NAMES[key]
        elif part.startswith("$APPEND_") and part[len("$APPEND_") :] in MARKS:
            mark = part[len("$APPEND_") :]
        else:
            return Action(refused=True)
    return Action(case, mark)


def _with_case(word: str, case: Case) -> str:
    if case == "capital":
        return capitalise(word)
    if case == "upper":
        return upper(word)
    t = split_token(word)
    if case == "lower":
        core = t.core.lower()
    elif case == "capital_1" and len(t.core) > 1:
        core = t.core[0] + t.core[1].upper() + t.core[2:]
    elif case == "upper_-1" and len(t.core) > 1:
        core = t.core[:-1].upper() + t.core[-1]
    else:
        return word
    return t.lead + core + t.trail


def apply_action(word: str, action: Action) -> str:
    """``word`` with ``action``; the result has the same casefolded letters (else ``word``)."""
    if action.refused or action.noop:
        return word
    out = with_mark(_with_case(word, action.case), action.mark) if action.mark else _with_case(word, action.case)
    return out if split_token(out).key == split_token(word).key else word


def apply_actions(words: Sequence[str], actions: Sequence[Action]) -> list[str]:
    return [apply_action(w, a) for w, a in zip(words, actions, strict=True)]
