"""Greedy decoding output to text: token runs, silence-split segments and word timings.

CTC: a frame-level argmax path. Transducer: every emitted token with the frame that emitted
it (a frame can emit several); see :func:`transducer_segments`.

Times: one encoder frame is 80 ms (10 ms fbank shift x 8 subsampling).

Segments follow the reference's timestamp rule exactly: a segment closes on the
``max_silence_frames``-th consecutive blank after a token (0.5 s -> 6 frames) and its end is
that blank frame; the next segment starts two frames before its first token, but not before
the midpoint between that token and the previous segment's end. A segment still open at the end
of the audio ends on the last frame.

Text uses the standard CTC collapse (merge repeated frames, then drop blanks). The reference's
long-form output drops blanks *before* merging, so "a _ a" reads "a" there and "aa" here; its
batch output uses the standard collapse, as we do everywhere. Special tokens (``<unk>``,
``<sos/eos>``, anything spelled ``<...>``) keep their frames and timing but never reach text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omoai_core.durations import timestamp
from omoai_core.schemas import Segment, Word

from omoai_asr.geometry import FRAME_SECONDS

WORD_START = "\u2581"  # "▁" opens a word in the sentencepiece vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id; ``<blank>`` is id 0 in every official checkpoint."""

    tokens: tuple[str, ...]
    blank_id: int = 0

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        """Read ``vocab.txt`` lines ``<token> <id>``; raises ``ValueError`` on a malformed file."""
        table: dict[int, str] = {}
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected '<token> <id>', got {line!r}")
            table[int(parts[1])] = parts[0]
        if not table:
            raise ValueError(f"{path} has no tokens")
        size = max(table) + 1
        tokens = tuple(table.get(i, f"<missing:{i}>") for i in range(size))
        blank = next((i for i, t in enumerate(tokens) if t == "<blank>"), 0)
        return cls(tokens, blank)

    def __len__(self) -> int:
        return len(self.tokens)

    def is_special(self, token_id: int) -> bool:
        token = self.tokens[token_id]
        return token_id == self.blank_id or (token.startswith("<") and token.endswith(">"))


@dataclass(frozen=True)
class TokenRuns:
    """Non-blank runs of a frame-level argmax path: the standard CTC collapse with timing."""

    ids: np.ndarray  # (K,) token id of each run
    first: np.ndarray  # (K,) first frame of the run
    last: np.ndarray  # (K,) last frame of the run


def token_runs(path: np.ndarray, blank_id: int = 0) -> TokenRuns:
    """Merge repeated frames, then drop blank runs; vectorised over frames."""
    path = np.asarray(path, dtype=np.int64)
    if path.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TokenRuns(empty, empty, empty)
    starts = np.flatnonzero(np.concatenate(([True], path[1:] != path[:-1])))
    ends = np.concatenate((starts[1:] - 1, [path.size - 1]))
    ids = path[starts]
    keep = ids != blank_id
    return TokenRuns(ids[keep], starts[keep], ends[keep])


def detokenize(ids: np.ndarray, vocab: Vocabulary) -> str:
    """Token ids to text: specials dropped, "▁" to spaces, whitespace normalised."""
    pieces = [vocab.tokens[i] for i in ids.tolist() if not vocab.is_special(i)]
    return " ".join("".join(pieces).replace(WORD_START, " ").split())


def ctc_text(path: np.ndarray, vocab: Vocabulary) -> str:
    """The transcript text of a frame-level argmax path (standard CTC collapse)."""
    return detokenize(token_runs(path, vocab.blank_id).ids, vocab)


@dataclass(frozen=True)
class FrameSegment:
    """A silence-delimited span in encoder frames, as the reference's timestamps define it."""

    start: int  # frame of the segment start (reference rule, may precede the first token)
    end: int  # frame of the segment end
    first_token: int  # index into TokenRuns of the segment's first run
    stop_token: int  # one past its last run

    @property
    def start_seconds(self) -> float:
        return self.start * FRAME_SECONDS

    @property
    def end_seconds(self) -> float:
        return self.end * FRAME_SECONDS


def frame_segments(path: np.ndarray, blank_id: int = 0, max_silence_frames: int = 6) -> list[FrameSegment]:
    """Split a path on runs of ``max_silence_frames`` blanks exactly as the reference does.

    Works on frames that hold a non-blank token (not on collapsed runs), so repeated tokens
    separated by blanks count as the reference counts them. Vectorised except for one step per
    segment.
    """
    path = np.asarray(path, dtype=np.int64)
    return _silence_segments(
        np.flatnonzero(path != blank_id), path.size, token_runs(path, blank_id), max_silence_frames
    )


def _silence_segments(
    voiced: np.ndarray, n_frames: int, runs: TokenRuns, max_silence_frames: int
) -> list[FrameSegment]:
    """Segments of ``n_frames`` frames of which ``voiced`` (sorted) hold tokens; ``runs`` in order."""
    if max_silence_frames < 1:
        raise ValueError("max_silence_frames must be at least 1")
    if voiced.size == 0:
        return []
    # A segment closes after voiced frame a when the next voiced frame is more than
    # max_silence_frames later; it ends on the max_silence_frames-th blank after a.
    gaps = np.diff(voiced) - 1
    closing = np.flatnonzero(gaps >= max_silence_frames)
    seg_first = np.concatenate(([voiced[0]], voiced[closing + 1]))
    seg_last = np.concatenate((voiced[closing], [voiced[-1]]))
    segments: list[FrameSegment] = []
    prev_end = -1
    for i, (first, last) in enumerate(zip(seg_first.tolist(), seg_last.tolist(), strict=True)):
        if prev_end == -1:
            start = max(first - 2, 0)
        else:
            start = max(math.ceil((first + prev_end) / 2), first - 2)
        is_last = i == len(seg_first) - 1
        if not is_last or last + max_silence_frames <= n_frames - 1:
            end = last + max_silence_frames
        else:
            end = n_frames - 1
        tok_lo = int(np.searchsorted(runs.first, first, side="left"))
        tok_hi = int(np.searchsorted(runs.first, last, side="right"))
        segments.append(FrameSegment(start, end, tok_lo, tok_hi))
        prev_end = end
    return segments


def words_in(runs: TokenRuns, lo: int, hi: int, vocab: Vocabulary, end_limit: float) -> list[Word]:
    """Words of runs ``lo:hi``: a token starting with "▁" opens a word; times from its frames."""
    words: list[Word] = []
    text = ""
    start = end = 0.0
    for k in range(lo, hi):
        token_id = int(runs.ids[k])
        if vocab.is_special(token_id):
            continue
        token = vocab.tokens[token_id]
        if token.startswith(WORD_START) and text:
            words.append(Word(word=text, start=start, end=end))
            text = ""
        piece = token.replace(WORD_START, "")
        if not piece:
            continue
        if not text:
            start = round(int(runs.first[k]) * FRAME_SECONDS, 3)
        text += piece
        end = round(min((int(runs.last[k]) + 1) * FRAME_SECONDS, end_limit), 3)
    if text:
        words.append(Word(word=text, start=start, end=end))
    return words


def segments_from_path(
    path: np.ndarray, vocab: Vocabulary, *, max_silence_frames: int = 6, word_timestamps: bool = True
) -> list[Segment]:
    """Schema segments: the reference's boundaries, standard-collapse text, optional words.

    Segments whose text is empty (only special tokens or "▁") are left out.
    """
    runs = token_runs(path, vocab.blank_id)
    return schema_segments(runs, frame_segments(path, vocab.blank_id, max_silence_frames), vocab, word_timestamps)


def emission_runs(tokens: np.ndarray, frames: np.ndarray) -> TokenRuns:
    """A transducer's emissions as runs: one per emitted token, first = last = its frame.

    No CTC collapse: two identical consecutive emissions are two tokens.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    frames = np.asarray(frames, dtype=np.int64)
    return TokenRuns(tokens, frames, frames)


def transducer_frame_segments(
    tokens: np.ndarray, frames: np.ndarray, n_frames: int, max_silence_frames: int = 6
) -> list[FrameSegment]:
    """The reference's segments over a transducer's output grid.

    A frame is silent iff it emitted nothing; a frame with several tokens is one non-silent
    frame whose tokens all join the current segment. Boundaries and times as for CTC.
    """
    runs = emission_runs(tokens, frames)
    return _silence_segments(np.unique(runs.first), n_frames, runs, max_silence_frames)


def transducer_segments(
    tokens: np.ndarray,
    frames: np.ndarray,
    n_frames: int,
    vocab: Vocabulary,
    *,
    max_silence_frames: int = 6,
    word_timestamps: bool = True,
) -> list[Segment]:
    """Schema segments of a transducer's emissions: the reference's boundaries and text.

    A segment's text is its tokens joined in emission order ("▁" -> space), repeats kept,
    special tokens (``<unk>``, ``<sos/eos>``) dropped; a word runs from the frame of its first
    token to the end of the frame of its last. Segments without text are left out.
    """
    runs = emission_runs(tokens, frames)
    segments = transducer_frame_segments(runs.ids, runs.first, n_frames, max_silence_frames)
    return schema_segments(runs, segments, vocab, word_timestamps)


def schema_segments(
    runs: TokenRuns, segments: list[FrameSegment], vocab: Vocabulary, word_timestamps: bool
) -> list[Segment]:
    """Frame segments (CTC or transducer) as schema segments; those without text are left out."""
    out: list[Segment] = []
    for seg in segments:
        text = detokenize(runs.ids[seg.first_token : seg.stop_token], vocab)
        if not text:
            continue
        start = round(seg.start_seconds, 3)
        end = round(seg.end_seconds, 3)
        words = words_in(runs, seg.first_token, seg.stop_token, vocab, end) if word_timestamps else []
        out.append(Segment(text=text, start=start, end=end, words=words))
    return out


def transducer_text(segments: list[Segment]) -> str:
    """A transducer transcript's text: its segment texts joined by a space.

    The reference's long-form rule (``endless_decode``). Its ``batch_decode`` joins all tokens
    without segment breaks instead (:func:`detokenize` of the tokens), which differs only in a
    space at a segment boundary inside a word; we use the long-form rule everywhere so one
    recording reads the same however it was batched.
    """
    return " ".join(seg.text for seg in segments)


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS:mmm``, the reference's segment time format."""
    return timestamp(seconds, ":")
