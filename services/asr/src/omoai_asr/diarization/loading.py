"""Building the configured diarization backend (``OMOAI_DIARIZATION_BACKEND``) on the service's
memory policy; pyannote is imported only when it is asked for."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from omoai_core.errors import ConfigError

from omoai_asr.diarization.types import DiarizationBackend

if TYPE_CHECKING:
    from omoai_gpu.memory import MemoryPolicy

    from omoai_asr.settings import AsrSettings

log = logging.getLogger(__name__)


def load_backend(settings: AsrSettings, policy: MemoryPolicy) -> DiarizationBackend | None:
    """The backend, or None when diarization is off (``auto`` without the default backend's weights)."""
    choice = settings.diarization_backend
    if choice == "off":
        return None
    if choice == "pyannote":
        from omoai_asr.diarization.pyannote_backend import PyannoteDiarizer

        return PyannoteDiarizer.load(policy, model=settings.diarization_pyannote_model)
    from omoai_asr.diarization.pipeline import EmbeddingDiarizer, PipelineConfig

    try:
        return EmbeddingDiarizer.load(
            policy,
            encoder_path=settings.diarization_encoder_path,
            vad_path=settings.diarization_vad_path,
            config=PipelineConfig.from_settings(settings),
        )
    except ConfigError as e:
        if choice == "omoai":
            raise
        log.warning("speaker diarization is off: %s", e.message)
        return None
