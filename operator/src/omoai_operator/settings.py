"""Operator settings: every value from ``OMOAI_*`` environment variables, validated once at startup."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

from omoai_core.addresses import IPNetwork
from omoai_core.errors import ConfigError
from omoai_core.settings import OmoaiSettings, Switch
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

#: Where Kubernetes projects the pod's namespace next to its service-account token.
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class OperatorSettings(OmoaiSettings):
    asr_url: str = Field(default="http://omoai-asr:8000", description="Base URL of the ASR service.")
    llm_url: str = Field(default="http://omoai-llm:8000", description="Base URL of the LLM service.")
    asr_api_token: SecretStr | None = Field(default=None, description="Bearer token for the ASR service.")
    asr_api_token_file: Path | None = Field(default=None, description="File holding the ASR token (a mounted Secret).")
    llm_api_token: SecretStr | None = Field(default=None, description="Bearer token for the LLM service.")
    llm_api_token_file: Path | None = Field(default=None, description="File holding the LLM token.")
    asr_concurrency: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="ASR requests in flight at once where endpoint discovery is unavailable (the Service URL).",
    )
    llm_concurrency: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="LLM requests in flight at once where endpoint discovery is unavailable (the Service URL).",
    )
    endpoint_discovery: Switch = Field(
        default=True,
        description="Follow the ready endpoints of the ASR and LLM Services (their EndpointSlices): capacity is "
        "ready endpoints x slots per endpoint, each stage placed on the least-loaded one.",
    )
    namespace: str | None = Field(
        default=None, description="Namespace of the operator's pod (default: its service account's namespace)."
    )
    asr_service: str = Field(
        default="", description="ASR Service to discover, name or namespace/name; empty = the host of OMOAI_ASR_URL."
    )
    llm_service: str = Field(
        default="", description="LLM Service to discover, name or namespace/name; empty = the host of OMOAI_LLM_URL."
    )
    asr_port_name: str = Field(default="http", description="Name of the ASR Service port in its EndpointSlices.")
    llm_port_name: str = Field(default="http", description="Name of the LLM Service port in its EndpointSlices.")
    asr_slots_per_endpoint: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="ASR stages per ready endpoint; unset = what each endpoint advertises on /v1/capacity.",
    )
    llm_slots_per_endpoint: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="LLM stages per ready endpoint; unset = what each endpoint advertises on /v1/capacity.",
    )
    endpoint_eject_s: float = Field(
        default=10.0, gt=0, description="An endpoint that refused or broke a connection gets no new stages this long."
    )
    namespace_weights: dict[str, float] = Field(
        default_factory=dict,
        description='Queue weight per namespace, JSON: {"team-a": 2}; within a priority level, namespaces take '
        "free slots in turn in proportion to their weights (default 1). The Namespace annotation "
        "omoai.io/queue-weight overrides it.",
    )
    namespace_max_running: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Most stages of one namespace's jobs running at once, all services together; unset = no cap. "
        "The Namespace annotation omoai.io/max-running overrides it per namespace.",
    )
    namespace_overrides: Switch = Field(
        default=True,
        description="Follow the omoai.io/queue-weight and omoai.io/max-running annotations of Namespace objects "
        "(changes apply at once, no restart).",
    )
    queue_metrics_namespaces: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Namespaces with their own series in the per-namespace queue metrics (the busiest); the "
        'rest are summed under namespace="_other".',
    )
    request_timeout_s: float = Field(default=4 * 3600.0, gt=0, description="Longest single service call.")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    backoff_base_s: float = Field(default=10.0, gt=0, description="First retry delay; doubles per retry.")
    backoff_max_s: float = Field(default=360.0, gt=0, description="Longest retry delay.")
    volumes: dict[str, str] = Field(
        default_factory=dict, description='Shared claims and their mount paths, JSON: {"omoai-data": "/data"}.'
    )
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty = all.")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Prometheus port; 0 turns it off.")
    metrics_host: str = Field(default="0.0.0.0")
    watch_server_timeout_s: int = Field(default=300, ge=1, description="Server-side watch timeout.")
    watch_client_timeout_s: float = Field(default=330.0, gt=0, description="Client-side watch timeout.")
    peering_name: str = Field(default="omoai", description="KopfPeering object: one replica acts at a time.")
    peering_standalone: Switch = Field(default=False, description="Skip peering (one replica only, tests).")
    peering_priority: int | None = Field(
        default=None,
        ge=0,
        description="Peering priority; unset = random per start, so replicas never tie (kopf pauses all on a tie).",
    )
    cancellation_timeout_s: float = Field(default=5.0, ge=0, description="Grace for in-flight work on delete.")
    suspend_poll_s: float = Field(default=0.5, gt=0, description="How often a suspended job looks at its spec.")
    # -- notifications (spec.notifications) and progress --------------------------------------------
    notify_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Time-out of one webhook delivery attempt.")
    notify_backoff_base_s: float = Field(default=5.0, gt=0, description="First webhook retry delay; doubles per retry.")
    notify_backoff_max_s: float = Field(default=300.0, gt=0, description="Longest webhook retry delay (before jitter).")
    notify_retry_window_s: float = Field(
        default=86400.0, gt=0, le=7 * 86400, description="A webhook event is retried this long after it happened."
    )
    notify_allow_http: Switch = Field(
        default=False, description="Accept http:// notification URLs (default: https only)."
    )
    allow_private_addresses: Switch = Field(
        default=False,
        description="Let notification URLs reach private, loopback and link-local addresses (the ASR service's "
        "setting of the same name does this for audio URLs).",
    )
    url_allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="CIDRs notification URLs may reach even though private, comma-separated.",
    )
    progress_interval_s: float = Field(
        default=5.0,
        ge=0.1,
        le=3600,
        description="At most one audio-progress status write per job this often while transcribing.",
    )

    @field_validator("url_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, v: object) -> object:
        """A JSON list or a comma/space separated string, as the ASR service's setting takes."""
        if isinstance(v, str):
            text = v.strip()
            return json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        return v

    @field_validator("asr_url", "llm_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("namespace_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for ns, w in v.items():
            if not math.isfinite(w) or not 0 < w <= 1000:
                raise ValueError(f"the weight of namespace {ns!r} must be in (0, 1000], got {w}")
        return v

    @model_validator(mode="after")
    def _tokens(self) -> OperatorSettings:
        for svc in ("asr", "llm"):
            if getattr(self, f"{svc}_api_token") is not None and getattr(self, f"{svc}_api_token_file") is not None:
                raise ValueError(f"set OMOAI_{svc.upper()}_API_TOKEN or OMOAI_{svc.upper()}_API_TOKEN_FILE, not both")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("OMOAI_BACKOFF_MAX_S must be at least OMOAI_BACKOFF_BASE_S")
        if self.notify_backoff_max_s < self.notify_backoff_base_s:
            raise ValueError("OMOAI_NOTIFY_BACKOFF_MAX_S must be at least OMOAI_NOTIFY_BACKOFF_BASE_S")
        return self

    def own_namespace(self) -> str | None:
        if self.namespace:
            return self.namespace
        try:
            return SA_NAMESPACE.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def token(self, svc: str) -> str | None:
        direct: SecretStr | None = getattr(self, f"{svc}_api_token")
        if direct is not None:
            return direct.get_secret_value()
        path: Path | None = getattr(self, f"{svc}_api_token_file")
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read OMOAI_{svc.upper()}_API_TOKEN_FILE {path}: {e}") from e
