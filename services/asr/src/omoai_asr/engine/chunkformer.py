"""The engine the service and CLI use: load once, transcribe one recording or a batch.

Input is int16 mono 16 kHz samples (``omoai_audio.decode_audio(...).samples``). Audio with
fewer than 400 samples (one 25 ms fbank frame), or fewer than 15 fbank frames (one encoder
frame, about 0.16 s), has nothing to recognise and gives an empty transcript rather than an
error, so one short request never fails a batch it shares.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omoai_core.schemas import Segment, Transcript
from omoai_gpu.memory import MemoryPolicy

from omoai_asr.engine.checkpoint import LoadedCheckpoint, load_checkpoint
from omoai_asr.engine.decoding import (
    FrameSegment,
    TokenRuns,
    Vocabulary,
    ctc_text,
    emission_runs,
    frame_segments,
    schema_segments,
    segments_from_path,
    token_runs,
    transducer_frame_segments,
    transducer_segments,
    transducer_text,
)
from omoai_asr.engine.features import SAMPLE_RATE, Cmvn, fbank, samples_to_tensor
from omoai_asr.engine.model import ChunkFormer, ModelDimensions
from omoai_asr.engine.options import DecodeOptions
from omoai_asr.engine.streaming import LongFormStream, advance, endless_decode, open_stream
from omoai_asr.engine.transcribe import (
    LongFormResult,
    batch_decode,
    reference_batches,
    window_keep_frames,
)
from omoai_asr.geometry import FRAME_SHIFT, SUBSAMPLING, fbank_frames

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = DecodeOptions()  # frozen: safe to share as a default


class ChunkFormerEngine:
    """A loaded ChunkFormer model (CTC or transducer) bound to one :class:`MemoryPolicy`."""

    sample_rate: int = SAMPLE_RATE

    def __init__(
        self,
        model: ChunkFormer,
        vocab: Vocabulary,
        cmvn: Cmvn | None,
        policy: MemoryPolicy,
        name: str,
    ) -> None:
        self.policy = policy
        self.model = model.to(policy.device).eval()
        self.vocab = vocab
        self.cmvn = None if cmvn is None else Cmvn(cmvn.mean.to(policy.device), cmvn.istd.to(policy.device))
        self.name = name

    @classmethod
    def load(cls, model: str | Path, policy: MemoryPolicy) -> ChunkFormerEngine:
        """Load a checkpoint directory or hub id; raises ``ModelLoadError`` with what to do."""
        ckpt: LoadedCheckpoint = load_checkpoint(model)
        name = str(model) if not Path(model).expanduser().is_dir() else ckpt.directory.name
        log.info(
            "loaded ChunkFormer %s %s: %d layers, width %d, vocab %d, on %s (%s)",
            "transducer" if ckpt.dims.is_transducer else "CTC",
            name,
            ckpt.dims.n_layer,
            ckpt.dims.n_state,
            ckpt.dims.n_vocab,
            policy.device,
            policy.dtype,
        )
        return cls(ckpt.model, ckpt.vocab, ckpt.cmvn, policy, name)

    @property
    def dims(self) -> ModelDimensions:
        return self.model.dims

    # -- features ---------------------------------------------------------------------------

    def features(self, samples: np.ndarray) -> torch.Tensor:
        """int16 samples -> normalised fbank (T, n_mels) on the policy's device, float32."""
        with self.policy.inference(), torch.autocast(self.policy.device.type, enabled=False):
            feats = fbank(samples_to_tensor(samples, self.policy.device), self.dims.n_mels)
            return feats if self.cmvn is None else self.cmvn.apply(feats)

    # -- frame-level decoding (also what the fidelity tests compare) -------------------------

    def decode_frames(
        self,
        samples: np.ndarray,
        options: DecodeOptions = DEFAULT_OPTIONS,
        *,
        keep_encoder_out: bool = False,
        keep_logprobs: bool = False,
        progress: Callable[[float], None] | None = None,
    ) -> LongFormResult:
        """Long-form decoding of one recording down to the per-frame argmax path."""
        return endless_decode(
            self.model,
            self.features(samples),
            options,
            self.policy,
            keep_encoder_out=keep_encoder_out,
            keep_logprobs=keep_logprobs,
            progress=progress,
        )

    def decode_frames_batch(
        self,
        batch: Sequence[np.ndarray],
        options: DecodeOptions = DEFAULT_OPTIONS,
        *,
        keep_encoder_out: bool = False,
        keep_logprobs: bool = False,
    ) -> list[LongFormResult]:
        """Masked-batch decoding (no windows), grouped exactly as the reference's ``batch_decode``.

        Recordings are taken in order and a masked forward pass runs once their fbank frames
        reach the batch budget (``int(tbd // 0.01) // 2``), the one that crosses it included.
        """
        feats = [self.features(s) for s in batch]
        results: list[LongFormResult] = []
        for group in reference_batches([f.size(0) for f in feats], options):
            results.extend(
                batch_decode(
                    self.model,
                    [feats[i] for i in group],
                    options,
                    self.policy,
                    keep_encoder_out=keep_encoder_out,
                    keep_logprobs=keep_logprobs,
                )
            )
        return results

    # -- transcripts ------------------------------------------------------------------------

    def transcribe(
        self,
        samples: np.ndarray,
        options: DecodeOptions = DEFAULT_OPTIONS,
        progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """One recording of any length, decoded in long-form windows."""
        result = self.decode_frames(samples, options, progress=progress)
        return self._transcript(result, len(samples), options)

    def transcribe_batch(
        self, batch: Sequence[np.ndarray], options: DecodeOptions = DEFAULT_OPTIONS
    ) -> list[Transcript]:
        """Several recordings, the short ones together in masked batches.

        A recording that fits one long-form window (``8 * keep + 7`` fbank frames, 896 s at
        the defaults) is decoded in a masked batch with others, grouped by the one batching rule
        (:func:`reference_batches`, as :meth:`decode_frames_batch`); its result is the same as
        :meth:`transcribe` (the same computation, batched). Longer recordings go through
        :meth:`transcribe` one by one.
        """
        feats = [self.features(s) for s in batch]
        single_window = 8 * window_keep_frames(options) + 7
        results: list[LongFormResult | None] = [None] * len(batch)
        short = [i for i, f in enumerate(feats) if f.size(0) <= single_window]
        for i, f in enumerate(feats):
            if f.size(0) > single_window:
                results[i] = endless_decode(self.model, f, options, self.policy)
        for group in reference_batches([feats[i].size(0) for i in short], options):
            members = [short[j] for j in group]
            decoded = batch_decode(self.model, [feats[i] for i in members], options, self.policy)
            for i, r in zip(members, decoded, strict=True):
                results[i] = r
        done = [r for r in results if r is not None]
        assert len(done) == len(batch), "every recording is decoded by one of the two paths"
        return [self._transcript(r, len(s), options) for r, s in zip(done, batch, strict=True)]

    # -- live streams -----------------------------------------------------------------------

    def open_stream(self, options: DecodeOptions = DEFAULT_OPTIONS) -> TranscriptStream:
        """A new live stream (one item): push samples, then :meth:`step_streams`."""
        return TranscriptStream(self, options)

    def step_streams(
        self,
        streams: Sequence[TranscriptStream],
        *,
        finish: Sequence[bool] | None = None,
        partial: Sequence[bool] | None = None,
    ) -> list[StreamUpdate]:
        """Decode the next ready window of each stream, in one masked batch across streams (call
        again while ``has_ready_window``: the caller reports after each window), finish the
        streams flagged in ``finish`` once they have no ready window left (the rest of their
        audio as final: their ``final`` transcript is the batch transcript of all they were fed;
        until then their update has no ``final``) and decode a partial hypothesis of the tail for those flagged in ``partial``.

        Streams decoded together must share their decode options (the scheduler groups them).
        """
        finish = finish if finish is not None else [False] * len(streams)
        partial = partial if partial is not None else [False] * len(streams)
        for s in streams:
            s.featurize()
        # A stream to finish first decodes its ready windows one per call like the others (so
        # its caller reports after each window); the rest is decoded as final once none is ready.
        finish = [f and not s.has_ready_window for f, s in zip(finish, streams, strict=True)]
        advance(self.model, [s.decoder for s in streams], self.policy, finish=finish, one_round=True)
        forks = {i: s.decoder.fork() for i, s in enumerate(streams) if partial[i] and not finish[i]}
        if forks:
            advance(self.model, list(forks.values()), self.policy, finish=[True] * len(forks))
        return [s.update(finished=finish[i], tail=forks[i] if i in forks else None) for i, s in enumerate(streams)]

    def _transcript(self, result: LongFormResult, n_samples: int, options: DecodeOptions) -> Transcript:
        path = result.frame_tokens
        if result.emissions is not None:
            segments = transducer_segments(
                result.emissions.tokens,
                result.emissions.frames,
                result.n_frames,
                self.vocab,
                max_silence_frames=options.max_silence_frames,
                word_timestamps=options.word_timestamps,
            )
            return Transcript(
                text=transducer_text(segments),
                segments=segments,
                duration=n_samples / SAMPLE_RATE,
                model=self.name,
                frames=[int(t) for t in path.tolist()] if options.include_frames else None,
            )
        return Transcript(
            text=ctc_text(path, self.vocab),
            segments=segments_from_path(
                path,
                self.vocab,
                max_silence_frames=options.max_silence_frames,
                word_timestamps=options.word_timestamps,
            ),
            duration=n_samples / SAMPLE_RATE,
            model=self.name,
            frames=[int(t) for t in path.tolist()] if options.include_frames else None,
        )


@dataclass(frozen=True)
class StreamUpdate:
    """What one :meth:`ChunkFormerEngine.step_streams` produced for one stream (item clock)."""

    text_delta: str = ""  # appended to the committed text (never revised)
    segments: tuple[Segment, ...] = ()  # segments that became final
    samples_done: int = 0  # samples whose text is committed
    partial: str | None = None  # the tail's revisable hypothesis, when asked for
    partial_samples: int = 0  # samples the partial covers
    final: Transcript | None = None  # when finished: the batch transcript of everything fed


class TranscriptStream:
    """One live item on the engine: samples in, committed text and final segments out.

    ``push`` may be called from another thread than the engine's (the event loop): the sample
    buffer is guarded. Everything else runs on the engine thread (``step_streams``). Memory: the
    decoder's bounded state, the samples not yet turned into features (what the scheduler's
    backpressure bounds) and the committed text.
    """

    def __init__(self, engine: ChunkFormerEngine, options: DecodeOptions) -> None:
        self.engine = engine
        self.options = options
        self.decoder: LongFormStream = open_stream(engine.model, options)
        self._lock = threading.Lock()
        self._buffer: list[np.ndarray] = []  # samples from FRAME_SHIFT * decoder.n_input on
        self._n_samples = 0
        self._text = ""  # committed text
        self._closed_frames = 0  # frame segments already final and sent
        self._segments_sent = 0  # schema segments sent
        self._full_window = self.decoder.full_window_frames

    @property
    def n_samples(self) -> int:
        return self._n_samples

    def push(self, samples: np.ndarray) -> None:
        """Append int16 mono 16 kHz samples."""
        with self._lock:
            self._buffer.append(np.asarray(samples, dtype=np.int16))
            self._n_samples += len(samples)

    @property
    def has_ready_window(self) -> bool:
        """Whether a window can be decoded now (its right context has arrived)."""
        decoder = self.decoder
        return not decoder.done and fbank_frames(self._n_samples) >= decoder.start + self._full_window

    @property
    def pending_samples(self) -> int:
        """Samples fed but not yet decoded into committed text (from the next window's start)."""
        return max(0, self._n_samples - FRAME_SHIFT * self.decoder.start)

    def featurize(self) -> None:
        """Turn the buffered samples into fbank frames for the decoder (engine thread)."""
        with self._lock:
            available = fbank_frames(self._n_samples)
            first = self.decoder.n_input
            if available <= first:
                return
            samples = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
            used = FRAME_SHIFT * (available - 1) + 400 - FRAME_SHIFT * first
            self._buffer = [samples[FRAME_SHIFT * (available - first) :].copy()]
        self.decoder.push(self.engine.features(samples[:used]))

    def update(self, *, finished: bool, tail: LongFormStream | None) -> StreamUpdate:
        """The committed delta and new final segments since the last update (and the partial)."""
        if finished:
            final = self.engine._transcript(self.decoder.result(), self._n_samples, self.options)
            delta = self._delta(final.text)
            return StreamUpdate(delta, tuple(final.segments[self._segments_sent :]), self._n_samples, None, 0, final)
        text, closed = self._committed(self.decoder)
        delta = self._delta(text)
        frames = self.decoder.frames_done
        partial = None
        if tail is not None:
            hypothesis, _ = self._committed(tail)
            partial = hypothesis[len(text) :].strip() if hypothesis.startswith(text) else hypothesis
        return StreamUpdate(
            delta,
            tuple(closed),
            min(frames * SUBSAMPLING * FRAME_SHIFT, self._n_samples),
            partial,
            self._n_samples,
        )

    def _delta(self, text: str) -> str:
        if not text.startswith(self._text):  # cannot happen: committed text only grows
            log.error("committed text was revised; the delta is dropped")
            return ""
        delta = text[len(self._text) :]
        self._text = text
        return delta

    def _committed(self, decoder: LongFormStream) -> tuple[str, list[Segment]]:
        """The text of what ``decoder`` has decoded, and the segments that became final since the
        last call (only for the stream's own decoder: a fork's are not counted)."""
        result = decoder.result()
        n = decoder.frames_done
        msf = self.options.max_silence_frames
        vocab = self.engine.vocab
        runs: TokenRuns
        fsegs: list[FrameSegment]
        if result.emissions is not None:
            runs = emission_runs(result.emissions.tokens, result.emissions.frames)
            fsegs = transducer_frame_segments(runs.ids, runs.first, n, msf)
            text = transducer_text(schema_segments(runs, fsegs, vocab, False))
        else:
            runs = token_runs(result.frame_tokens, vocab.blank_id)
            fsegs = frame_segments(result.frame_tokens, vocab.blank_id, msf)
            text = ctc_text(result.frame_tokens, vocab)
        if decoder is not self.decoder:
            return text, []
        closed = len(fsegs)
        if fsegs and not decoder.done and int(runs.last[fsegs[-1].stop_token - 1]) + msf > n - 1:
            closed -= 1  # the last segment may still grow
        # Frame segments carry their start (which depends on the previous one's end) already.
        new = schema_segments(runs, fsegs[self._closed_frames : closed], vocab, self.options.word_timestamps)
        self._closed_frames = closed
        self._segments_sent += len(new)
        return text, new
