"""Speaker diarization: who spoke when, and which speaker said each word of a transcript.

- ``types``: options, turns and the backend protocol;
- ``pipeline``: the default backend (Silero VAD + GE2E embeddings + spectral clustering), with
  real pretrained weights that two PyPI wheels ship (``assets``), run by our own code
  (``features``, ``encoder``, ``vad``, ``clustering``, ``resegmentation``), tuned by ``config``;
- ``pyannote_backend``: the optional pyannote community-1 pipeline (GPU, hub access);
- ``alignment``: speaker turns onto ASR words and segments.

Nothing here imports FastAPI; importing the package loads no weights.
"""

from omoai_asr.diarization.types import Diarization, DiarizationBackend, DiarizationOptions, SpeakerTurn

__all__ = ["Diarization", "DiarizationBackend", "DiarizationOptions", "SpeakerTurn"]
