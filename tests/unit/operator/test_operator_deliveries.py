"""Webhook delivery rules (pure): which events a status change raises, stable ids, the retry
policy (back-off with jitter, Retry-After, 410, other 4xx, the window), and signatures that the
``standardwebhooks`` library verifies with every key of a rotation."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os

import pytest
from omoai_operator import deliveries as dl
from omoai_operator import webhooks
from omoai_operator.spec import parse_spec
from omoai_operator.status import Delivery, JobStatus, Phase
from standardwebhooks import Webhook, WebhookVerificationError

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
POLICY = dl.RetryPolicy(base_s=10.0, cap_s=100.0, window_s=600.0, timeout_s=5.0)


def key() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def spec(*hooks: dict[str, object]) -> object:
    return parse_spec(
        {
            "source": {"url": "https://a.example/x.wav"},
            "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]},
            "notifications": list(hooks),
        }
    )


def hook(**over: object) -> dict[str, object]:
    return {"url": "https://hooks.example/h?token=s3cret", "secretRef": {"name": "k"}, **over}


def record(**over: object) -> Delivery:
    base = {
        "endpoint": 0,
        "url": "https://h",
        "event": "succeeded",
        "id": "msg_x",
        "time": T0,
        "state": "Pending",
        "attempts": 0,
    }
    return Delivery.model_validate(base | over)


def admitted(s: JobStatus) -> JobStatus:
    return s.with_condition("Admitted", True, "Admitted", "capacity granted", T0)


def test_events_are_raised_on_admission_and_on_the_terminal_phase_only() -> None:
    pending = JobStatus(phase=Phase.PENDING)
    running = admitted(pending).evolve(phase=Phase.TRANSCRIBING)
    assert dl.raised(pending, running) == ["started"]
    assert dl.raised(running, running.evolve(phase=Phase.POSTPROCESSING)) == []
    assert dl.raised(running, running.evolve(phase=Phase.SUCCEEDED)) == ["succeeded"]
    assert dl.raised(running, running.evolve(phase=Phase.FAILED)) == ["failed"]
    assert dl.raised(pending, pending.evolve(phase=Phase.FAILED)) == ["failed"]  # failed before admission


def test_enqueue_adds_one_record_per_wanted_event_and_endpoint_never_twice() -> None:
    s = spec(hook(events=["started", "succeeded"]), hook(url="https://b.example/h"))
    status = dl.enqueue(s, JobStatus(), ["started"], "uid-1", T0)  # type: ignore[arg-type]
    assert [(d.endpoint, d.event) for d in status.notifications] == [(0, "started")]
    status = dl.enqueue(s, status, ["started", "succeeded"], "uid-1", T0)  # type: ignore[arg-type]
    assert [(d.endpoint, d.event) for d in status.notifications] == [(0, "started"), (0, "succeeded"), (1, "succeeded")]
    assert all(d.state == "Pending" and d.attempts == 0 for d in status.notifications)
    assert "s3cret" not in json.dumps(status.wire())  # secret query values never reach the status


def test_message_ids_are_stable_per_event_and_distinct_across_events_jobs_and_endpoints() -> None:
    ids = {webhooks.message_id(uid, ep, ev) for uid in ("a", "b") for ep in (0, 1) for ev in ("started", "failed")}
    assert len(ids) == 8
    assert webhooks.message_id("a", 0, "failed") == webhooks.message_id("a", 0, "failed")


def test_a_disabled_endpoint_gets_no_later_events() -> None:
    s = spec(hook(events=["started", "succeeded"]))
    status = dl.enqueue(s, JobStatus(), ["started"], "u", T0)  # type: ignore[arg-type]
    gone, outcome = dl.after_attempt(status.notifications[0], dl.Attempt(410), T0, POLICY)
    assert outcome == "disabled" and gone.state == "Disabled"
    status = dl.replace(status, gone)
    assert dl.enqueue(s, status, ["succeeded"], "u", T0).notifications == status.notifications  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "state", "outcome"),
    [
        (200, "Delivered", "delivered"),
        (204, "Delivered", "delivered"),
        (410, "Disabled", "disabled"),
        (400, "Failed", "rejected"),
        (404, "Failed", "rejected"),
        (301, "Failed", "rejected"),
        (408, "Pending", "retry"),
        (429, "Pending", "retry"),
        (500, "Pending", "retry"),
        (503, "Pending", "retry"),
        (None, "Pending", "retry"),
    ],
)
def test_an_answer_decides_between_delivered_retry_and_stop(code: int | None, state: str, outcome: str) -> None:
    after, got = dl.after_attempt(record(), dl.Attempt(code), T0, POLICY, rand=lambda: 0.5)
    assert (after.state, got) == (state, outcome)
    assert after.attempts == 1 and after.last_http_code == code and after.last_attempt_time == T0
    assert (after.next_attempt_time is not None) == (state == "Pending")


def test_a_refused_address_is_not_retried() -> None:
    after, outcome = dl.after_attempt(record(), dl.Attempt(None, "refused", permanent=True), T0, POLICY)
    assert outcome == "rejected" and after.state == "Failed"


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    for attempts, full in ((1, 10.0), (2, 20.0), (3, 40.0), (5, 100.0), (9, 100.0)):
        low = POLICY.delay(attempts, None, rand=lambda: 0.0)
        high = POLICY.delay(attempts, None, rand=lambda: 1.0)
        assert (low, high) == (full / 2, full)


def test_retry_after_is_honoured_when_longer_than_the_back_off() -> None:
    assert POLICY.delay(1, 45.0, rand=lambda: 1.0) == 45.0
    assert POLICY.delay(1, 1.0, rand=lambda: 1.0) == 10.0
    assert dl.retry_after("120", T0) == 120.0
    assert dl.retry_after("Fri, 02 Jan 2026 03:05:05 GMT", T0) == 60.0
    assert dl.retry_after("soon", T0) is None and dl.retry_after(None, T0) is None
    after, _ = dl.after_attempt(record(), dl.Attempt(503, retry_after_s=45.0), T0, POLICY, rand=lambda: 0.0)
    assert after.next_attempt_time == T0 + dt.timedelta(seconds=45)


def test_retries_stop_when_the_window_since_the_event_runs_out() -> None:
    late = T0 + dt.timedelta(seconds=590)
    after, outcome = dl.after_attempt(record(attempts=6), dl.Attempt(500), late, POLICY, rand=lambda: 0.0)
    assert outcome == "gave_up" and after.state == "Failed"
    assert "gave up after 7 attempt(s)" in (after.message or "") and "HTTP 500" in (after.message or "")


def test_delivery_records_survive_the_status_round_trip_to_the_millisecond() -> None:
    due = T0 + dt.timedelta(seconds=1.5)
    status = JobStatus(notifications=(record(next_attempt_time=due),))
    again = JobStatus.from_wire(json.loads(json.dumps(status.wire())))
    assert again.notifications[0].next_attempt_time == due and again == status


def _signed(keys: list[str], fmt: str = "standard-webhooks") -> webhooks.Message:
    s = spec(hook(format=fmt))
    endpoint = s.notifications[0]  # type: ignore[attr-defined]
    status = JobStatus(phase=Phase.SUCCEEDED, reason="Completed", audio_duration_seconds=2.0, summary_title="Chào")
    raw = webhooks.signing_keys(" ".join(keys), "test")
    job = webhooks.JobIdentity("ns", "job", "uid-1")
    return webhooks.build(endpoint, record(), job, status, raw, dt.datetime.now(dt.UTC))


def test_every_signing_key_signs_so_receivers_verify_during_a_rotation() -> None:
    old, new, other = key(), key(), key()
    msg = _signed([old, new])
    Webhook(old).verify(msg.body, msg.headers)
    Webhook(new).verify(msg.body, msg.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(msg.body, msg.headers)
    assert msg.headers["webhook-signature"].count("v1,") == 2
    body = json.loads(msg.body)
    assert body["type"] == "transcriptionjob.succeeded"
    assert body["data"] | {} == {
        "namespace": "ns",
        "name": "job",
        "uid": "uid-1",
        "phase": "Succeeded",
        "reason": "Completed",
        "message": None,
        "results": None,
        "audioDurationSeconds": 2.0,
        "realTimeFactor": None,
        "summaryTitle": "Chào",
    }


def test_a_tampered_body_fails_verification() -> None:
    k = key()
    msg = _signed([k])
    with pytest.raises(WebhookVerificationError):
        Webhook(k).verify(msg.body.replace(b"Succeeded", b"Failed"), msg.headers)


def test_cloudevents_format_is_binary_mode_and_signed_the_same_way() -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_binary_event

    k = key()
    msg = _signed([k], "cloudevents")
    Webhook(k).verify(msg.body, msg.headers)
    event = from_binary_event(HTTPMessage(headers=msg.headers, body=msg.body))
    assert event.get_id() == msg.headers["webhook-id"] and event.get_type() == "io.omoai.transcriptionjob.succeeded"
    assert event.get_source() == "/apis/omoai.io/v1alpha1/namespaces/ns/transcriptionjobs/job"
    assert event.get_subject() == "uid-1" and event.get_time() == T0
    data = event.get_data()
    assert isinstance(data, dict) and data["phase"] == "Succeeded"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "holds no signing key"),
        ("secret", "does not start with 'whsec_'"),
        ("whsec_!!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "shorter than 16 bytes"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(raw: str, why: str) -> None:
    with pytest.raises(webhooks.KeyError_, match=why) as e:
        webhooks.signing_keys(raw, "Secret k/signing-key")
    assert raw not in str(e.value) or not raw


async def test_a_host_name_resolving_to_loopback_is_refused_at_connection_time_and_not_retried() -> None:
    from omoai_operator.notifier import AddressGuard, Notifier

    k = key()

    async def read_secret(namespace: str, name: str) -> dict[str, str]:
        return {"signing-key": k}

    notifier = Notifier(POLICY, AddressGuard(allow_http=True), read_secret)
    s = spec(hook(url="http://localhost:9/h"))
    job = webhooks.JobIdentity("ns", "job", "uid-1")
    try:
        attempt = await notifier.send(s.notifications[0], record(), job, JobStatus(), T0)  # type: ignore[attr-defined]
    finally:
        await notifier.aclose()
    assert attempt.permanent and attempt.status is None
    assert "resolves to the loopback address" in (attempt.error or "") and k not in (attempt.error or "")
    _, outcome = dl.after_attempt(record(), attempt, T0, POLICY)
    assert outcome == "rejected"


async def test_an_unreachable_api_server_when_reading_the_key_is_a_retried_attempt() -> None:
    from omoai_operator.notifier import AddressGuard, Notifier

    async def read_secret(namespace: str, name: str) -> dict[str, str]:
        raise ConnectionResetError("the API server went away")

    notifier = Notifier(POLICY, AddressGuard(), read_secret)
    s = spec(hook())
    job = webhooks.JobIdentity("ns", "job", "uid-1")
    try:
        attempt = await notifier.send(s.notifications[0], record(), job, JobStatus(), T0)  # type: ignore[attr-defined]
    finally:
        await notifier.aclose()
    assert not attempt.permanent and "cannot read the Secret (ConnectionResetError)" in (attempt.error or "")
    assert dl.after_attempt(record(), attempt, T0, POLICY)[1] == "retry"
