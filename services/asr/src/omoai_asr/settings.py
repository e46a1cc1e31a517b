"""Settings of the ASR service and CLI: one frozen object built once from ``OMOAI_*`` variables
(and command-line flags on top), validated at startup with errors that name the variable to fix.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from omoai_core.contracts.asr import DECODE_DEFAULTS as DEFAULTS
from omoai_core.settings import InferenceSettings, ServerSettings, Switch
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from omoai_asr.checkpoints import DEFAULT_MODEL
from omoai_asr.diarization.config import DEFAULTS as DIARIZATION

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UrlScheme = Literal["http", "https", "s3", "file"]


class AsrSettings(InferenceSettings, ServerSettings):
    """Everything ``omoai-asr serve`` reads; every field is also ``OMOAI_<FIELD>`` in the environment."""

    # -- model -------------------------------------------------------------------------------------
    model: str = Field(
        default=DEFAULT_MODEL,
        description=f"Checkpoint directory or hub id (default {DEFAULT_MODEL}, the recommended one; CC-BY-4.0).",
    )
    served_model_name: str | None = Field(
        default=None, description="Name reported by /v1/models and in transcripts; default: the model's name."
    )
    strict_model_name: Switch = Field(
        default=False,
        description="Refuse OpenAI requests whose `model` is not the served name (default: any name is this model).",
    )
    language: str = Field(default="vi", description="Language reported in OpenAI verbose_json responses.")
    warmup: Switch = Field(default=True, description="Run one short decode before reporting ready.")
    torch_threads: int | None = Field(default=None, ge=1, description="torch intra-op threads (CPU); unset = torch's.")

    # -- audio limits ------------------------------------------------------------------------------
    max_audio_duration_s: float = Field(default=4 * 3600.0, gt=0, description="Longest audio accepted.")
    decode_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="Wall-clock limit of ffprobe and ffmpeg decoding one input (422 decode_timeout).",
    )
    min_audio_duration_s: float = Field(
        default=0.1, ge=0, description="Shortest audio accepted (shorter input has nothing to recognise)."
    )

    # -- batching ----------------------------------------------------------------------------------
    max_batch_size: int = Field(default=8, ge=1, description="Most requests decoded in one masked batch.")
    batch_window_ms: float = Field(
        default=10.0, ge=0, description="How long the first request of a batch waits for others to join."
    )
    max_concurrency: int = Field(
        default=16, ge=1, description="Requests admitted at once (decoding audio, batching, computing)."
    )

    # -- live streams (the realtime WebSocket's decoding; omoai_asr/live.py) ----------------------
    live_max_streams: int = Field(
        default=64, ge=1, description="Live streams decoded at once on this replica (more are refused)."
    )
    live_max_buffered_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Audio a live stream may hold not yet decoded; feeding more waits (backpressure).",
    )
    live_partial_interval_s: float = Field(
        default=0.5, ge=0, description="Least time between two partial hypotheses of one live stream."
    )

    # -- default decode options (a request may override them) -------------------------------------
    chunk_size: int = Field(default=DEFAULTS.chunk_size, ge=1, description="Encoder frames per chunk (80 ms each).")
    left_context: int = Field(default=DEFAULTS.left_context, ge=0, description="Left context in encoder frames.")
    right_context: int = Field(default=DEFAULTS.right_context, ge=0, description="Right context in encoder frames.")
    total_batch_duration: float = Field(
        default=DEFAULTS.total_batch_duration, gt=0, description="Seconds of audio per forward pass."
    )
    word_timestamps: Switch = Field(default=DEFAULTS.word_timestamps, description="Word timestamps in segments.")

    # -- URL inputs (audio_url) --------------------------------------------------------------------
    url_allowed_schemes: Annotated[list[UrlScheme], NoDecode] = Field(
        default_factory=lambda: list(get_args(UrlScheme)),
        description="Schemes audio_url may use (file also needs OMOAI_FILE_ROOT).",
    )
    allow_private_addresses: Switch = Field(
        default=False, description="Let audio_url reach private, loopback and link-local addresses."
    )
    url_allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="CIDRs reachable even though private, e.g. 10.0.12.0/24 for an in-cluster object store.",
    )
    file_root: Path | None = Field(
        default=None, description="Directory file:// URLs are confined to (a shared volume); unset = file:// off."
    )
    fetch_timeout_s: float = Field(default=300.0, gt=0, description="Wall-clock limit of fetching one audio_url.")
    fetch_connect_timeout_s: float = Field(default=10.0, gt=0, description="Connect timeout of one URL fetch.")
    max_url_bytes: int = Field(default=2 * 1024**3, gt=0, description="Largest download from an audio_url.")
    max_redirects: int = Field(default=5, ge=0, description="Redirects followed (each one re-checked).")
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (MinIO, Ceph...); unset = AWS.")
    s3_region: str | None = Field(default=None, description="S3 region.")
    s3_access_key_id: SecretStr | None = Field(default=None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    s3_session_token: SecretStr | None = Field(default=None, description="S3 session token (optional).")

    # -- speaker diarization (omoai_asr.diarization) -----------------------------------------------
    diarization_backend: Literal["auto", "omoai", "pyannote", "off"] = Field(
        default="auto",
        description=(
            "Who-spoke-when backend: omoai (Silero VAD + GE2E, weights from the resemblyzer and faster-whisper "
            "wheels), pyannote (community-1, needs HF_TOKEN and the [pyannote] extra), off, or auto (omoai when "
            "its weights are installed, else off with a warning)."
        ),
    )
    diarization_encoder_path: Path | None = Field(
        default=None, description="Speaker encoder weights (pretrained.pt); unset = the resemblyzer wheel's."
    )
    diarization_vad_path: Path | None = Field(
        default=None, description="Silero VAD ONNX file; unset = the faster-whisper wheel's."
    )
    diarization_pyannote_model: str = Field(
        default="pyannote/speaker-diarization-community-1", description="Hub id or directory of the pyannote pipeline."
    )
    diarization_max_concurrency: int = Field(default=1, ge=1, description="Recordings diarized at once.")
    # The omoai backend's tuning (omoai_asr.diarization.config.PipelineConfig); defaults measured in
    # docs/benchmarks.md (Speaker diarization).
    diarization_window_s: float = Field(
        default=DIARIZATION.window_s, gt=0, le=10, description="Speaker embedding window (omoai backend)."
    )
    diarization_step_s: float = Field(
        default=DIARIZATION.step_s, gt=0, le=10, description="Step between embedding windows (omoai backend)."
    )
    diarization_min_cluster_window_s: float = Field(
        default=DIARIZATION.min_cluster_window_s,
        ge=0,
        description="Shorter windows are left out of clustering and join their nearest speaker (omoai backend).",
    )
    diarization_min_run_s: float = Field(
        default=DIARIZATION.min_run_s, ge=0, description="Shorter speaker runs go to a neighbour (omoai backend)."
    )
    diarization_merge_gap_s: float = Field(
        default=DIARIZATION.merge_gap_s,
        ge=0,
        description="A speaker's turns closer than this are joined (omoai backend).",
    )
    diarization_reference_similarity: float = Field(
        default=DIARIZATION.reference_similarity,
        ge=-1,
        le=1,
        description="Cosine similarity a speaker needs to take a reference voice's name (omoai backend).",
    )
    diarization_distinct_similarity: float = Field(
        default=DIARIZATION.clustering.distinct_similarity,
        ge=-1,
        le=1,
        description="Estimated counts: two speakers' centroids at least this similar are one voice (omoai backend).",
    )
    diarization_over_partition: int = Field(
        default=DIARIZATION.clustering.over_partition,
        ge=0,
        le=4,
        description="Also cluster into k+1..k+N groups merged back to k, keeping the best separated (omoai backend).",
    )
    diarization_max_cluster_windows: int = Field(
        default=DIARIZATION.max_cluster_windows,
        ge=2,
        description="Longer recordings cluster an even subsample of this many windows, then assign all (omoai backend).",
    )
    diarization_batch_windows: int = Field(
        default=DIARIZATION.batch_windows, ge=1, description="Windows per speaker-encoder call (omoai backend)."
    )

    # -- realtime WebSocket sessions (omoai_asr.realtime) -------------------------------------------
    realtime_enabled: Switch = Field(default=True, description="Serve GET /v1/realtime (live transcription).")
    realtime_sessions_per_slot: int = Field(
        default=4,
        ge=1,
        description="Live sessions counted as one request slot in /v1/capacity (they bypass the operator's queue; "
        "their maximum is OMOAI_LIVE_MAX_STREAMS).",
    )
    realtime_total_batch_duration: float = Field(
        default=11.0,
        gt=0,
        description="Realtime sessions' default total_batch_duration: text is committed one window (of this many "
        "seconds' worth of chunks, 5.12 s at 11) plus the right context after its audio arrives; a client may "
        "change it (session.omoai.decode).",
    )
    realtime_max_session_s: float = Field(
        default=4 * 3600.0, gt=0, description="Longest a session may stay open (then: final text, close 1008)."
    )
    realtime_idle_timeout_s: float = Field(
        default=60.0, gt=0, description="A session that sends nothing for this long is closed (1008)."
    )
    realtime_max_append_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest decoded audio of one input_audio_buffer.append (larger: an error, the audio dropped).",
    )
    realtime_max_outbox_events: int = Field(
        default=512,
        ge=8,
        description="Server events queued for a client that does not read; beyond it the session closes (1008).",
    )
    realtime_vad_threshold: float = Field(
        default=0.5, ge=0, le=1, description="server_vad default threshold (speech probability)."
    )
    realtime_vad_prefix_padding_ms: int = Field(
        default=300, ge=0, le=5000, description="server_vad default audio kept before the detected speech."
    )
    realtime_vad_silence_duration_ms: int = Field(
        default=900,
        ge=100,
        le=10000,
        description="server_vad default silence that ends a turn; above Vietnamese hesitations (300-700 ms).",
    )
    realtime_max_item_s: float = Field(
        default=30.0, gt=1, description="Longest turn under server_vad: a turn still speaking is committed there."
    )

    @field_validator("url_allowed_schemes", "url_allowed_networks", mode="before")
    @classmethod
    def _list_from_env(cls, v: Any) -> Any:
        """A JSON list or a comma/space separated string (``http,https``)."""
        if isinstance(v, str):
            text = v.strip()
            v = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        return [s.strip().lower() if isinstance(s, str) else s for s in v] if isinstance(v, list) else v

    @field_validator("file_root")
    @classmethod
    def _root_is_dir(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        v = v.expanduser()
        if not v.is_dir():
            raise ValueError(f"{v} is not a directory")
        return v.resolve()

    @model_validator(mode="after")
    def _consistent(self) -> AsrSettings:
        if self.min_audio_duration_s >= self.max_audio_duration_s:
            raise ValueError("OMOAI_MIN_AUDIO_DURATION_S must be below OMOAI_MAX_AUDIO_DURATION_S")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both OMOAI_S3_ACCESS_KEY_ID and OMOAI_S3_SECRET_ACCESS_KEY, or neither")
        return self

    def served_name(self) -> str:
        """The model name clients see: ``served_model_name``, else the checkpoint's directory name or hub id."""
        if self.served_model_name:
            return self.served_model_name
        path = Path(self.model).expanduser()
        return path.resolve().name if path.is_dir() else self.model
