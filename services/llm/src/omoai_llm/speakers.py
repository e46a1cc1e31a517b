"""Speakers in the LLM stages: diarized segments carry a speaker label (``S1``, ``S2``... or a known
speaker's name). Summaries and topics see speaker-tagged lines (``S2: ...``) and may attribute
ideas to speakers; what the model writes is then checked so that it names only speakers who are in
the transcript: a sentence or bullet that names an invented label (``S7`` where only S1-S3 spoke)
is dropped, ``Speaker 2``/``SPEAKER_02`` spellings of a real label are rewritten to it.

Punctuation needs nothing here: it rewrites each segment's text in place, and a diarized segment
never spans two speakers, so every word keeps its speaker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from omoai_core.schemas import Segment, Summary, Topic

# S3, Speaker 3, speaker_03, SPEAKER 3, người nói 3 (Vietnamese "speaker").
_LABEL = re.compile(r"\b(?:S|speaker[ _]?|người nói\s)0*(\d{1,3})\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?…])\s+")

_NOTE = {
    "vi": (
        "Mỗi dòng của bản ghi bắt đầu bằng nhãn người nói ({labels}). Có thể ghi ai nói gì "
        '(ví dụ "S2 đề xuất ..."), nhưng chỉ dùng đúng các nhãn này, không đặt thêm người nói nào khác.'
    ),
    "en": (
        "Each transcript line starts with its speaker's label ({labels}). You may attribute ideas to speakers "
        '(e.g. "S2 proposed ..."), using only these labels; never name any other speaker.'
    ),
}


def speakers_of(segments: Sequence[Segment]) -> list[str]:
    """The speakers in the segments, in order of first appearance (empty: not diarized)."""
    return list(dict.fromkeys(s.speaker for s in segments if s.speaker))


def tagged(segments: Sequence[Segment]) -> list[Segment]:
    """Copies whose text starts with the speaker's label; unchanged when not diarized."""
    return [s.model_copy(update={"text": f"{s.speaker}: {s.text.strip()}"}) if s.speaker else s for s in segments]


def note(language: str, speakers: Sequence[str]) -> str:
    """The instruction appended to a system prompt when the transcript has speakers."""
    return _NOTE.get(language, _NOTE["en"]).format(labels=", ".join(speakers))


def _fix(text: str, known: set[str]) -> tuple[str, bool]:
    """``text`` with real labels normalised; False when it names a speaker who is not known."""
    ok = True

    def sub(m: re.Match[str]) -> str:
        nonlocal ok
        label = f"S{int(m.group(1))}"
        if m.group(0) in known:
            return m.group(0)
        if label in known:
            return label
        ok = False
        return m.group(0)

    return _LABEL.sub(sub, text), ok


def clean_text(text: str, known: set[str]) -> tuple[str, int]:
    """Drops the sentences of ``text`` that name unknown speakers; (text, sentences dropped)."""
    kept, dropped = [], 0
    for sentence in _SENTENCE.split(text.strip()):
        fixed, ok = _fix(sentence, known)
        if ok:
            kept.append(fixed)
        else:
            dropped += 1
    return " ".join(kept), dropped


def clean_summary(summary: Summary, speakers: Sequence[str]) -> tuple[Summary, int]:
    """The summary with invented speakers removed; (summary, sentences and bullets dropped)."""
    known = set(speakers)
    abstract, dropped = clean_text(summary.abstract, known)
    bullets = []
    for b in summary.bullets:
        fixed, ok = _fix(b, known)
        if ok:
            bullets.append(fixed)
        else:
            dropped += 1
    title, ok = _fix(summary.title, known)
    if not ok:  # a title cannot lose a sentence: remove the invented label itself
        title = " ".join(_LABEL.sub("", title).split())
        dropped += 1
    return summary.model_copy(update={"title": title, "abstract": abstract, "bullets": bullets}), dropped


def clean_topics(topics: Sequence[Topic], speakers: Sequence[str]) -> tuple[list[Topic], int]:
    known = set(speakers)
    out, dropped = [], 0
    for t in topics:
        title, ok = _fix(t.title, known)
        if not ok:
            title = " ".join(_LABEL.sub("", title).split()) or t.title
            dropped += 1
        summary = t.summary
        if summary is not None:
            summary, n = clean_text(summary, known)
            dropped += n
        out.append(t.model_copy(update={"title": title, "summary": summary or None}))
    return out, dropped
