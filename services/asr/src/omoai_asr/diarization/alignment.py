"""Speaker turns onto a transcript: every word gets exactly one speaker, every segment one speaker.

- A word takes the speaker whose turns overlap it the longest (so a word is never split between
  speakers, and in overlapping speech it goes to the voice that covers more of it); a word no turn
  touches takes the nearest turn's speaker.
- A segment whose words change speaker is split at each change: the pieces' text is their words,
  their times run from the first word's start to the last word's end (the outer edges keep the
  segment's own start and end).
- A segment without words (word timestamps off) takes the speaker covering most of it, unsplit.
- When diarization found no speech at all but the recognizer found words, one speaker (``S1``)
  said them: a transcript with words has at least one speaker.
"""

from __future__ import annotations

from collections.abc import Sequence

from omoai_core.schemas import Segment, Transcript, Word

from omoai_asr.diarization.types import Diarization, SpeakerTurn


def speaker_of(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str | None:
    """The speaker covering most of ``[start, end]``; the nearest turn's when none overlaps it."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for t in turns:
        o = min(end, t.end) - max(start, t.start)
        if o > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + o
    if overlap:
        return max(overlap.items(), key=lambda kv: (kv[1], -_first(turns, kv[0])))[0]
    mid = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - mid, mid - t.end, 0.0)).speaker


def _first(turns: Sequence[SpeakerTurn], speaker: str) -> float:
    return next(t.start for t in turns if t.speaker == speaker)


def assign_speakers(transcript: Transcript, diarization: Diarization) -> Transcript:
    """A copy of ``transcript`` with speakers on segments and words, segments split at speaker changes."""
    turns = sorted(diarization.turns, key=lambda t: t.start)
    speakers = list(diarization.speakers)
    if not turns and transcript.segments:
        turns = [SpeakerTurn("S1", 0.0, max(transcript.duration, transcript.segments[-1].end))]
        speakers = ["S1"]
    segments: list[Segment] = []
    for seg in transcript.segments:
        if not seg.words:
            segments.append(seg.model_copy(update={"speaker": speaker_of(seg.start, seg.end, turns)}))
            continue
        words = [w.model_copy(update={"speaker": speaker_of(w.start, w.end, turns)}) for w in seg.words]
        segments.extend(_split(seg, words))
    return transcript.model_copy(update={"segments": segments, "speakers": speakers})


def _split(seg: Segment, words: list[Word]) -> list[Segment]:
    runs: list[list[Word]] = []
    for w in words:
        if runs and runs[-1][0].speaker == w.speaker:
            runs[-1].append(w)
        else:
            runs.append([w])
    if len(runs) == 1:
        return [seg.model_copy(update={"words": words, "speaker": words[0].speaker})]
    out = []
    for i, run in enumerate(runs):
        start = seg.start if i == 0 else run[0].start
        end = seg.end if i == len(runs) - 1 else max(run[-1].end, start)
        out.append(Segment(text=" ".join(w.word for w in run), start=start, end=end, words=run, speaker=run[0].speaker))
    return out
