"""The optional pyannote backend: the ``pyannote/speaker-diarization-community-1`` pipeline.

For deployments with a GPU and Hugging Face hub access (the pipeline is gated: accept its terms
and set ``HF_TOKEN``). ``pyannote.audio`` is imported only when this backend is built
(``OMOAI_DIARIZATION_BACKEND=pyannote``; ``pip install 'omoai-asr[pyannote]'``). It is not
exercised by this repository's tests or benchmarks: neither the weights nor a GPU are available
where they run.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from omoai_audio import INT16_SCALE, SAMPLE_RATE
from omoai_core.errors import ConfigError, InvalidInputError
from omoai_gpu.memory import MemoryPolicy

from omoai_asr.diarization.types import Diarization, DiarizationOptions, labelled

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = "pyannote/speaker-diarization-community-1"


class PyannoteDiarizer:
    name = "pyannote"

    def __init__(self, pipeline: object, policy: MemoryPolicy) -> None:
        self.pipeline = pipeline
        self.policy = policy

    @classmethod
    def load(cls, policy: MemoryPolicy, *, model: str = DEFAULT_PIPELINE, token: str | None = None) -> PyannoteDiarizer:
        try:
            from pyannote.audio import Pipeline
        except ImportError as e:
            raise ConfigError("the pyannote backend needs pyannote.audio: pip install 'omoai-asr[pyannote]'") from e
        token = token or os.environ.get("HF_TOKEN")
        try:
            pipeline = Pipeline.from_pretrained(model, token=token)
        except Exception as e:
            raise ConfigError(
                f"cannot load the pyannote pipeline {model!r} (HF_TOKEN set, terms accepted?): {e}"
            ) from e
        if pipeline is None:
            raise ConfigError(f"the pyannote pipeline {model!r} could not be loaded (gated: set HF_TOKEN)")
        pipeline.to(policy.device)
        return cls(pipeline, policy)

    def diarize(self, samples: np.ndarray, options: DiarizationOptions) -> Diarization:
        if options.references:
            raise InvalidInputError("known speaker references are supported by the default diarization backend only")
        waveform = torch.from_numpy(np.asarray(samples, dtype=np.float32) / INT16_SCALE)[None, :]  # (1, N)
        kwargs: dict[str, int] = {}
        if options.num_speakers is not None:
            kwargs["num_speakers"] = options.num_speakers
        else:
            kwargs["min_speakers"] = options.min_speakers
            kwargs["max_speakers"] = options.max_speakers
        with self.policy.inference():
            output = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **kwargs)  # type: ignore[operator]
        # community-1 returns an object with .speaker_diarization; 3.x pipelines an Annotation.
        annotation = getattr(output, "speaker_diarization", output)
        turns = [(label, float(seg.start), float(seg.end)) for seg, _, label in annotation.itertracks(yield_label=True)]
        return labelled(turns, {}, len(samples) / SAMPLE_RATE, self.name)
