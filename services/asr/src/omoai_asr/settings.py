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
