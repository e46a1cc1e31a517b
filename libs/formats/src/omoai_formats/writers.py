"""Render a :class:`~omoai_core.schemas.Transcript` or :class:`~omoai_core.schemas.Document` in one
of the output formats. Every writer is a pure function of the document.

Diarized transcripts (segments with a ``speaker``) show who speaks: SRT cues start ``S1: ``, VTT
cues are voice spans (``<v S1>...``), txt and md print one paragraph per speaker turn
(consecutive segments of one speaker), led by the speaker's label.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from omoai_core.contracts import FORMATS
from omoai_core.durations import clock, timestamp
from omoai_core.errors import InvalidInputError
from omoai_core.schemas import Document, Segment, Transcript

EXTENSIONS: dict[str, str] = {fmt: f".{fmt}" for fmt in FORMATS}


def _doc(obj: Transcript | Document) -> Document:
    return obj if isinstance(obj, Document) else Document(transcript=obj)


def _cue_text(seg: Segment) -> str:
    # A blank line ends a cue in SRT/VTT; "-->" would be read as a timing line in VTT.
    return " ".join(seg.text.split()).replace("-->", "→")


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _turns(segments: list[Segment]) -> list[tuple[str | None, float, str]]:
    """(speaker, start, text) per run of consecutive non-empty segments of one speaker."""
    out: list[tuple[str | None, float, str]] = []
    for seg in segments:
        text = seg.text.strip()
        if not text:
            continue
        if out and seg.speaker is not None and out[-1][0] == seg.speaker:
            out[-1] = (seg.speaker, out[-1][1], f"{out[-1][2]} {text}")
        else:
            out.append((seg.speaker, seg.start, text))
    return out


def _diarized(doc: Document) -> bool:
    return any(s.speaker is not None for s in doc.transcript.segments)


def to_json(doc: Document) -> str:
    if doc.summary is None and doc.topics is None and doc.quality is None:
        payload = doc.transcript.model_dump(exclude_none=True)
    else:
        payload = doc.model_dump(exclude_none=True)
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"


def to_txt(doc: Document) -> str:
    if _diarized(doc):
        turns = _turns(doc.transcript.segments)
        return "".join(f"{spk}: {text}\n" if spk else f"{text}\n" for spk, _, text in turns)
    lines = [s.text.strip() for s in doc.transcript.segments if s.text.strip()]
    return ("\n".join(lines) + "\n") if lines else ""


def to_srt(doc: Document) -> str:
    cues = []
    for i, seg in enumerate((s for s in doc.transcript.segments if s.text.strip()), start=1):
        label = f"{seg.speaker}: " if seg.speaker else ""
        cues.append(f"{i}\n{timestamp(seg.start, ',')} --> {timestamp(seg.end, ',')}\n{label}{_cue_text(seg)}\n")
    return "\n".join(cues)


def to_vtt(doc: Document) -> str:
    cues = ["WEBVTT\n"]
    for seg in doc.transcript.segments:
        if seg.text.strip():
            text = _cue_text(seg)
            if seg.speaker:
                text = f"<v {_vtt_escape(seg.speaker)}>{_vtt_escape(text)}"
            cues.append(f"{timestamp(seg.start, '.')} --> {timestamp(seg.end, '.')}\n{text}\n")
    return "\n".join(cues)


def to_md(doc: Document) -> str:
    t = doc.transcript
    title = doc.summary.title if doc.summary else "Transcript"
    out = [f"# {title}", "", f"*Model:* `{t.model}` · *Duration:* {clock(t.duration)}", ""]
    if t.speakers:
        out += [f"*Speakers:* {', '.join(t.speakers)}", ""]
    if doc.summary:
        out += ["## Summary", "", doc.summary.abstract.strip(), ""]
        out += [f"- {b.strip()}" for b in doc.summary.bullets] + ([""] if doc.summary.bullets else [])
    if doc.topics:
        out += ["## Topics", ""]
        out += [f"- **[{clock(tp.start)}]** {tp.title}" for tp in doc.topics] + [""]
    out += ["## Transcript", ""]
    if _diarized(doc):
        for spk, start, text in _turns(t.segments):
            out += [f"**[{clock(start)}] {spk}:** {text}" if spk else f"**[{clock(start)}]** {text}", ""]
    else:
        for seg in t.segments:
            if seg.text.strip():
                out += [f"**[{clock(seg.start)}]** {seg.text.strip()}", ""]
    return "\n".join(out).rstrip() + "\n"


_WRITERS: dict[str, Callable[[Document], str]] = {
    "json": to_json,
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "md": to_md,
}


def render(obj: Transcript | Document, fmt: str) -> str:
    """The text of ``obj`` in ``fmt`` (one of :data:`FORMATS`)."""
    try:
        writer = _WRITERS[fmt]
    except KeyError:
        raise InvalidInputError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    return writer(_doc(obj))


def write(obj: Transcript | Document, fmt: str, directory: str | os.PathLike[str], stem: str) -> Path:
    """Write ``obj`` as ``directory/stem.<fmt>`` atomically (temp file, then rename); returns the path."""
    text = render(obj, fmt)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{stem}{EXTENSIONS[fmt]}"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target
