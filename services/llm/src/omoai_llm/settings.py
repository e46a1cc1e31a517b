"""LlmSettings: every knob of the LLM service, from ``OMOAI_*`` environment variables or CLI flags,
validated once at startup. Unsafe or contradictory combinations are refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from omoai_core.contracts import primary_language
from omoai_core.contracts.llm import PunctuationMethod
from omoai_core.settings import InferenceSettings, ServerSettings, Switch
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

Backend = Literal["vllm", "transformers", "openai"]
AlignmentPolicy = Literal["strict", "lenient"]


class LlmSettings(ServerSettings, InferenceSettings):
    model_config = SettingsConfigDict(env_prefix="OMOAI_", extra="ignore", frozen=True, validate_default=True)

    # -- models ---------------------------------------------------------------------------------
    backend: Backend = Field(default="transformers", description="vllm, transformers or openai.")
    model: str = Field(default="", description="Hub id or local directory (openai: the served model name).")
    summary_model: str | None = Field(
        default=None, description="A different model for summaries and topics; unset = the same model."
    )
    single_model_resident: Switch = Field(
        default=False,
        description="Keep only one model loaded (when both do not fit): switching unloads the other.",
    )
    offline: Switch = Field(
        default=False, description="Never download: load only from a local directory or the local hub cache."
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: Switch = Field(default=False, description="Allow model code from the hub (unsafe).")
    context_tokens: int | None = Field(
        default=None, ge=256, description="Context window; unset = the model's own (max_position_embeddings)."
    )
    gpu_memory_utilization: float = Field(default=0.85, gt=0.05, le=0.99, description="vLLM only.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="vLLM only.")

    # -- generation -----------------------------------------------------------------------------
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 = greedy (reproducible).")
    concurrency: int = Field(default=8, ge=1, le=256, description="Model calls in flight per request.")
    max_batch_size: int = Field(default=8, ge=1, le=256, description="transformers: prompts batched together.")
    batch_wait_ms: float = Field(default=5.0, ge=0, le=1000, description="transformers: wait to fill a batch.")
    punct_chunk_tokens: int = Field(
        default=1024, ge=16, description="Transcript tokens per punctuation call (also capped by the context)."
    )
    punct_context_words: int = Field(
        default=8,
        ge=0,
        le=64,
        description="Words of the neighbouring chunks shown around each chunk (sentences cross chunk edges).",
    )
    summary_max_tokens: int = Field(default=768, ge=16, description="Generated tokens of a summary call.")
    topics_max_tokens: int = Field(default=768, ge=16, description="Generated tokens of a topics call.")
    max_topics: int = Field(default=12, ge=1, le=200, description="Default number of topics at most.")
    language: str = Field(default="vi", description="Default language of prompts (vi or en).")
    prompts_file: Path | None = Field(
        default=None, description='JSON file overriding prompts: {"vi": {"punctuate": "..."}, ...}.'
    )
    alignment: AlignmentPolicy = Field(
        default="strict", description="strict: only punctuation and case change; lenient: spelling fixes too."
    )
    punctuation_method: PunctuationMethod = Field(
        default="rewrite",
        description="Default punctuation method: rewrite (LLM writes the text), edits (LLM lists marks and casing "
        "per numbered word) or tagger (token classification, OMOAI_TAGGER_MODEL). A request may name another.",
    )

    # -- tagger ---------------------------------------------------------------------------------
    tagger_model: str | None = Field(
        default=None,
        description="Tagger hub id or directory (Seq2Labels or token-classification layout); enables method tagger.",
    )
    tagger_iterations: int = Field(default=3, ge=1, le=10, description="Seq2Labels: decoding rounds at most.")
    tagger_confidence_bias: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Added to the probability of $KEEP (fewer, surer edits)."
    )
    tagger_min_error_probability: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Labels (and Seq2Labels windows) below this are not applied."
    )
    tagger_window_words: int = Field(default=128, ge=8, le=512, description="Words per tagger window.")
    tagger_margin_words: int = Field(
        default=16, ge=0, le=128, description="Context words on each side of a window (not labelled by it)."
    )
    tagger_max_batch_size: int = Field(default=16, ge=1, le=512, description="Windows per tagger forward pass.")

    # -- limits ---------------------------------------------------------------------------------
    max_input_chars: int = Field(default=2_000_000, ge=1, description="Largest transcript text per request.")
    max_segments: int = Field(default=50_000, ge=1, description="Most segments per request.")

    # -- openai backend -------------------------------------------------------------------------
    openai_base_url: str = Field(default="http://127.0.0.1:8001/v1", description="Base URL ending in /v1.")
    openai_api_key: SecretStr | None = Field(default=None, description="Bearer key of the upstream server.")
    openai_timeout_s: float = Field(default=120.0, gt=0, description="Per-call timeout.")
    openai_retries: int = Field(default=3, ge=0, le=20, description="Retries on 429/5xx/connection errors.")
    openai_backoff_s: float = Field(default=0.5, ge=0, description="First retry delay; doubles each time.")
    tokenizer: str | None = Field(
        default=None, description="openai: tokenizer dir or hub id for exact token counts (else estimated)."
    )

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str) -> str:
        return primary_language(v)

    @field_validator("model", "summary_model", "tokenizer", "tagger_model")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _coherent(self) -> LlmSettings:
        if self.summary_model == self.model:
            object.__setattr__(self, "summary_model", None)
        if self.single_model_resident and self.backend == "openai":
            raise ValueError(
                "OMOAI_SINGLE_MODEL_RESIDENT only applies to in-process backends (vllm, transformers); "
                "an openai server holds its own models"
            )
        if self.tagger_model == "":
            object.__setattr__(self, "tagger_model", None)
        if self.tagger_only and self.punctuation_method != "tagger":
            object.__setattr__(self, "punctuation_method", "tagger")  # the only method a tagger-only service has
        if self.punctuation_method == "tagger" and not self.tagger_model:
            raise ValueError("OMOAI_PUNCTUATION_METHOD=tagger needs OMOAI_TAGGER_MODEL (a hub id or a directory)")
        if self.openai_base_url and not self.openai_base_url.startswith(("http://", "https://")):
            raise ValueError("OMOAI_OPENAI_BASE_URL must start with http:// or https://")
        return self

    @property
    def resolved_summary_model(self) -> str:
        return self.summary_model or self.model

    @property
    def tagger_only(self) -> bool:
        """No LLM configured: the service punctuates with the tagger and refuses summaries and topics."""
        return not self.model and bool(self.tagger_model)
