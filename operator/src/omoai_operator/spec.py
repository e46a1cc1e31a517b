"""The TranscriptionJob spec as a pydantic model: the same rules and defaults as the CRD's
``openAPIV3Schema`` and CEL rules (``charts/omoai/crds/transcriptionjobs.omoai.io.yaml``), so a job
run by ``omoai run`` without a cluster is checked exactly like one applied with kubectl.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from omoai_core.contracts import FORMATS, OutputFormat
from omoai_core.contracts.asr import DECODE_DEFAULTS
from omoai_core.contracts.llm import PunctuationMethod
from omoai_core.errors import InvalidInputError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "omoai.io"
VERSION = "v1alpha1"
PLURAL = "transcriptionjobs"
KIND = "TranscriptionJob"
API_VERSION = f"{GROUP}/{VERSION}"

_DNS = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_BUCKET = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"
_HTTP_URL = r"^https?://[^\s/?#]+[^\s]*$"
_ENDPOINT = r"^https?://[^\s]+$"

DnsName = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS)]
Bucket = Annotated[str, Field(min_length=3, max_length=63, pattern=_BUCKET)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


def _relative_path(v: str, field: str) -> str:
    # The CEL rule on the CRD says the same: no absolute paths, no '..' segment.
    if v.startswith("/") or ".." in v.split("/"):
        raise ValueError(f"{field} must be relative to the claim root and must not contain '..'")
    return v


class SecretRef(_Model):
    name: DnsName


class PvcSource(_Model):
    claim_name: DnsName
    path: Annotated[str, Field(min_length=1, max_length=4096)]

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _relative_path(v, "pvc.path")


class S3Source(_Model):
    bucket: Bucket
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    region: Annotated[str, Field(max_length=64)] | None = None
    endpoint: Annotated[str, Field(max_length=2048, pattern=_ENDPOINT)] | None = None
    secret_ref: SecretRef


class Source(_Model):
    url: Annotated[str, Field(max_length=4096, pattern=_HTTP_URL)] | None = None
    s3: S3Source | None = None
    pvc: PvcSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if sum(x is not None for x in (self.url, self.s3, self.pvc)) != 1:
            raise ValueError("exactly one audio source must be set: url, s3 or pvc")
        return self

    @property
    def kind(self) -> Literal["url", "s3", "pvc"]:
        return "url" if self.url is not None else "s3" if self.s3 is not None else "pvc"


class AsrOptions(_Model):
    chunk_size: Annotated[StrictInt, Field(ge=4, le=512)] = DECODE_DEFAULTS.chunk_size
    left_context: Annotated[StrictInt, Field(ge=0, le=1024)] = DECODE_DEFAULTS.left_context
    right_context: Annotated[StrictInt, Field(ge=0, le=1024)] = DECODE_DEFAULTS.right_context
    total_batch_duration: Annotated[StrictInt | StrictFloat, Field(ge=1, le=14400)] = (
        DECODE_DEFAULTS.total_batch_duration
    )
    word_timestamps: StrictBool = DECODE_DEFAULTS.word_timestamps


SpeakerCount = Annotated[StrictInt, Field(ge=1, le=20)]


class Diarization(_Model):
    """Who spoke when: every segment and word gets a speaker label (S1, S2...)."""

    enabled: StrictBool = False
    num_speakers: SpeakerCount | None = None
    min_speakers: SpeakerCount | None = None
    max_speakers: SpeakerCount | None = None

    @model_validator(mode="after")
    def _counts(self) -> Diarization:
        # The CRD's CEL rules on spec.diarization say the same.
        lo, hi, num = self.min_speakers, self.max_speakers, self.num_speakers
        if not self.enabled and (lo is not None or hi is not None or num is not None):
            raise ValueError("speaker counts require diarization.enabled: true")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("diarization.minSpeakers must not exceed diarization.maxSpeakers")
        if num is not None and ((lo is not None and num < lo) or (hi is not None and num > hi)):
            raise ValueError("diarization.numSpeakers must lie within [minSpeakers, maxSpeakers]")
        return self

    def asr_fields(self) -> dict[str, Any]:
        """The ASR service's request fields (``diarize``, ``num_speakers``...); empty when off."""
        if not self.enabled:
            return {}
        fields: dict[str, Any] = {"diarize": True}
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        return fields


class PostProcess(_Model):
    punctuation: StrictBool = True
    #: rewrite, edits or tagger; unset = the LLM service's default. ``punctuation: false`` wins.
    punctuation_method: PunctuationMethod | None = None
    summary: Literal["none", "abstract", "full"] = "full"
    topics: StrictBool = True


class PvcOutput(_Model):
    claim_name: DnsName
    path: Annotated[str, Field(min_length=1, max_length=4096)]

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _relative_path(v, "output.pvc.path")


class S3Output(_Model):
    bucket: Bucket
    prefix: Annotated[str, Field(min_length=1, max_length=1024)]
    region: Annotated[str, Field(max_length=64)] | None = None
    endpoint: Annotated[str, Field(max_length=2048, pattern=_ENDPOINT)] | None = None
    secret_ref: SecretRef


class Output(_Model):
    pvc: PvcOutput | None = None
    s3: S3Output | None = None
    formats: Annotated[list[OutputFormat], Field(min_length=1, max_length=len(FORMATS))]
    stem: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] | None = None

    @field_validator("formats")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("formats must not repeat a format")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> Output:
        if sum(x is not None for x in (self.pvc, self.s3)) != 1:
            raise ValueError("exactly one output destination must be set: pvc or s3")
        return self


#: The job events a notification endpoint may ask for.
NotificationEvent = Literal["started", "succeeded", "failed"]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = ("started", "succeeded", "failed")
DEFAULT_EVENTS: tuple[NotificationEvent, ...] = ("succeeded", "failed")
#: Most endpoints per job (the CRD's ``maxItems``): each one is a delivery state in the status.
MAX_NOTIFICATIONS = 5
_WEBHOOK_URL = r"^https?://[^\s/?#]+[^\s]*$"


class SigningKeyRef(_Model):
    """The Secret (in the job's namespace) and key holding the signing key(s): one or more
    ``whsec_...`` values separated by whitespace; every one signs (key rotation)."""

    name: DnsName
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "signing-key"


class Notification(_Model):
    """One webhook endpoint: where, which events, how signed, in which format."""

    url: Annotated[str, Field(min_length=1, max_length=2048, pattern=_WEBHOOK_URL)]
    events: Annotated[list[NotificationEvent], Field(min_length=1, max_length=len(NOTIFICATION_EVENTS))] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS)
    )
    secret_ref: SigningKeyRef
    format: Literal["standard-webhooks", "cloudevents"] = "standard-webhooks"

    @field_validator("events")
    @classmethod
    def _unique_events(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("events must not repeat an event")
        return v


class JobSpec(_Model):
    source: Source
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] = "vi"
    asr: AsrOptions = Field(default_factory=AsrOptions)
    diarization: Diarization = Field(default_factory=Diarization)
    postprocess: PostProcess = Field(default_factory=PostProcess)
    output: Output
    backoff_limit: Annotated[StrictInt, Field(ge=0, le=100)] = 3
    active_deadline_seconds: Annotated[StrictInt, Field(ge=1, le=604800)] | None = None
    ttl_seconds_after_finished: Annotated[StrictInt, Field(ge=0, le=31536000)] | None = None
    suspend: StrictBool = False
    priority: Annotated[StrictInt, Field(ge=-1000, le=1000)] = 0
    notifications: Annotated[list[Notification], Field(max_length=MAX_NOTIFICATIONS)] = Field(default_factory=list)


#: Fields that may change after creation (the CRD's transition rule says the same).
MUTABLE_FIELDS = frozenset({"suspend", "priority", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"})


def parse_spec(raw: dict[str, Any] | None) -> JobSpec:
    """Validate a spec; a bad one becomes an :class:`InvalidInputError` naming every bad field."""
    try:
        return JobSpec.model_validate(raw or {})
    except ValidationError as e:
        raise InvalidInputError("invalid spec: " + describe_errors(e)) from e


def describe_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = re.sub(r"^Value error, ", "", err["msg"])
        parts.append(f"spec.{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_manifest(doc: dict[str, Any]) -> tuple[dict[str, Any], JobSpec]:
    """Check that ``doc`` is a TranscriptionJob manifest and validate its spec."""
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise InvalidInputError(
            f"expected apiVersion {API_VERSION} and kind {KIND}, got {doc.get('apiVersion')!r} / {doc.get('kind')!r}"
        )
    meta = doc.get("metadata") or {}
    if not meta.get("name"):
        raise InvalidInputError("metadata.name is required")
    return meta, parse_spec(doc.get("spec"))
