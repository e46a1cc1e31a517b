"""Webhook messages, pure: the payload of a job event, its Standard Webhooks signature headers,
and its CloudEvents (HTTP binary mode) headers.

Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` (stable per event, the same on
every retry), ``webhook-timestamp`` (Unix seconds of the attempt) and ``webhook-signature``: one
``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body`` per signing key, space separated, so a
receiver holding either the old or the new key verifies while keys rotate.

CloudEvents: binary content mode, because the body stays the same job JSON in both formats and the
signature covers it unchanged; the envelope (``ce-id`` = ``webhook-id``, ``ce-type``, ``ce-source``,
``ce-time``, ``ce-subject``) travels in headers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omoai_operator.spec import API_VERSION, PLURAL, Notification
from omoai_operator.status import Delivery, JobStatus

KEY_PREFIX = "whsec_"
#: ``ce-type`` prefix: reverse-DNS of our API group, then the resource and the event.
CLOUDEVENT_TYPE = "io.omoai.transcriptionjob"


class KeyError_(ValueError):
    """The Secret holds no usable signing key. The message never contains key material."""


@dataclass(frozen=True)
class JobIdentity:
    namespace: str
    name: str
    uid: str


def message_id(uid: str, endpoint: int, event: str) -> str:
    """The ``webhook-id`` of one event for one endpoint: derived, not stored, so a restarted or a
    standby operator sends the same id and a receiver can drop duplicates."""
    digest = hashlib.sha256(f"{uid}/{endpoint}/{event}".encode()).digest()
    return "msg_" + base64.b32encode(digest[:20]).decode().lower().rstrip("=")


def signing_keys(raw: str, where: str) -> list[bytes]:
    """The keys in a Secret value: ``whsec_<base64>`` words separated by whitespace (several while
    rotating). ``where`` names the Secret and key in the error."""
    keys = []
    for n, word in enumerate(raw.split(), 1):
        if not word.startswith(KEY_PREFIX):
            raise KeyError_(f"{where}: signing key {n} does not start with {KEY_PREFIX!r}")
        try:
            key = base64.b64decode(word[len(KEY_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise KeyError_(f"{where}: signing key {n} is not valid base64 after {KEY_PREFIX!r}") from None
        if len(key) < 16:
            raise KeyError_(f"{where}: signing key {n} is shorter than 16 bytes")
        keys.append(key)
    if not keys:
        raise KeyError_(f"{where} holds no signing key ({KEY_PREFIX}...)")
    return keys


def signature(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per key."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_data(job: JobIdentity, status: JobStatus) -> dict[str, Any]:
    """What a receiver learns about the job: the status as it is when the delivery is made."""
    results = status.results
    return {
        "namespace": job.namespace,
        "name": job.name,
        "uid": job.uid,
        "phase": status.phase.value if status.phase else None,
        "reason": status.reason,
        "message": status.message,
        "results": {"location": results.location, "files": list(results.files)} if results else None,
        "audioDurationSeconds": status.audio_duration_seconds,
        "realTimeFactor": status.real_time_factor,
        "summaryTitle": status.summary_title,
    }


@dataclass(frozen=True)
class Message:
    headers: dict[str, str]
    body: bytes


def build(
    endpoint: Notification,
    delivery: Delivery,
    job: JobIdentity,
    status: JobStatus,
    keys: Sequence[bytes],
    now: dt.datetime,
) -> Message:
    """The request of one attempt: signed now (``webhook-timestamp`` is the attempt's time, so a
    retry hours later still passes the receiver's replay window)."""
    data = job_data(job, status)
    headers = {"content-type": "application/json", "user-agent": "omoai-operator"}
    if endpoint.format == "cloudevents":
        payload: dict[str, Any] = data
        headers |= {
            "ce-specversion": "1.0",
            "ce-id": delivery.id,
            "ce-type": f"{CLOUDEVENT_TYPE}.{delivery.event}",
            "ce-source": f"/apis/{API_VERSION}/namespaces/{job.namespace}/{PLURAL}/{job.name}",
            "ce-subject": job.uid,
            "ce-time": _iso(delivery.time),
        }
    else:
        payload = {"type": f"transcriptionjob.{delivery.event}", "timestamp": _iso(delivery.time), "data": data}
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    ts = int(now.timestamp())
    headers |= {
        "webhook-id": delivery.id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature(keys, delivery.id, ts, body),
    }
    return Message(headers, body)
