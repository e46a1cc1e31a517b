"""The default diarization backend's tuning (``PipelineConfig``), built from the service's settings
(``OMOAI_DIARIZATION_*``) or left at the defaults the quality benchmark measured. numpy only: the
settings module reads its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from omoai_asr.diarization.clustering import ClusteringOptions
from omoai_asr.diarization.vad import VadOptions

if TYPE_CHECKING:
    from omoai_asr.settings import AsrSettings


@dataclass(frozen=True)
class PipelineConfig:
    window_s: float = 1.5
    step_s: float = 0.75
    min_cluster_window_s: float = 1.0
    min_run_s: float = 0.5
    merge_gap_s: float = 0.3
    reference_similarity: float = 0.7  # a cluster takes a reference's name at least this similar
    max_cluster_windows: int = 3000  # longer recordings cluster an even subsample, then assign all
    batch_windows: int = 512  # windows per LSTM call: the 150 sequential steps are amortised over the batch
    vad: VadOptions = field(default_factory=VadOptions)
    clustering: ClusteringOptions = field(default_factory=ClusteringOptions)

    @classmethod
    def from_settings(cls, settings: AsrSettings) -> PipelineConfig:
        """The ``OMOAI_DIARIZATION_*`` tuning; what the settings do not name keeps its default."""
        return cls(
            window_s=settings.diarization_window_s,
            step_s=settings.diarization_step_s,
            min_cluster_window_s=settings.diarization_min_cluster_window_s,
            min_run_s=settings.diarization_min_run_s,
            merge_gap_s=settings.diarization_merge_gap_s,
            reference_similarity=settings.diarization_reference_similarity,
            max_cluster_windows=settings.diarization_max_cluster_windows,
            batch_windows=settings.diarization_batch_windows,
            clustering=replace(
                ClusteringOptions(),
                distinct_similarity=settings.diarization_distinct_similarity,
                over_partition=settings.diarization_over_partition,
            ),
        )


#: The defaults, for the settings' field defaults.
DEFAULTS = PipelineConfig()
