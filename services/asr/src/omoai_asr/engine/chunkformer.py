"""The engine the service and CLI use: load once, transcribe one recording or a batch.

Input is int16 mono 16 kHz samples (``omoai_audio.decode_audio(...).samples``). Audio with
fewer than 400 samples (one 25 ms fbank frame), or fewer than 15 fbank frames (one encoder
frame, about 0.16 s), has nothing to recognise and gives an empty transcript rather than an
error, so one short request never fails a batch it shares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from omoai_core.schemas import Transcript
from omoai_gpu.memory import MemoryPolicy

from omoai_asr.engine.checkpoint import LoadedCheckpoint, load_checkpoint
from omoai_asr.engine.decoding import (
    Vocabulary,
    ctc_text,
    segments_from_path,
    transducer_segments,
    transducer_text,
)
from omoai_asr.engine.features import SAMPLE_RATE, Cmvn, fbank, samples_to_tensor
from omoai_asr.engine.model import ChunkFormer, ModelDimensions
from omoai_asr.engine.options import DecodeOptions
from omoai_asr.engine.transcribe import (
    LongFormResult,
    batch_decode,
    endless_decode,
    max_batch_frames,
    reference_batches,
    window_keep_frames,
)

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
        the defaults) is decoded in a masked batch with others, up to the reference's batch
        budget of input frames; its result is the same as :meth:`transcribe` (the same
        computation, batched). Longer recordings go through :meth:`transcribe` one by one.
        """
        feats = [self.features(s) for s in batch]
        single_window = 8 * window_keep_frames(options) + 7
        budget = max_batch_frames(options)
        results: list[LongFormResult | None] = [None] * len(batch)
        group: list[int] = []
        used = 0

        def flush() -> None:
            nonlocal group, used
            if group:
                decoded = batch_decode(self.model, [feats[i] for i in group], options, self.policy)
                for i, r in zip(group, decoded, strict=True):
                    results[i] = r
            group, used = [], 0

        for i, f in enumerate(feats):
            n = f.size(0)
            if n > single_window:
                results[i] = endless_decode(self.model, f, options, self.policy)
                continue
            if group and used + n > budget:
                flush()
            group.append(i)
            used += n
        flush()
        done = [r for r in results if r is not None]
        assert len(done) == len(batch), "every recording is decoded by one of the two paths"
        return [self._transcript(r, len(s), options) for r, s in zip(done, batch, strict=True)]

    def _transcript(self, result: LongFormResult, n_samples: int, options: DecodeOptions) -> Transcript:
        path = result.argmax
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
