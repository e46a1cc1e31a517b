"""Webhook notifications end to end without a cluster: jobs run by ``omoai run``'s driver against
the stub services, delivering to a real receiver on loopback that verifies every request with the
``standardwebhooks`` library: signatures (two keys while rotating), ids, retries after 500 and
time-outs, Retry-After, 410, a receiver down for a while, the retry window, and bad spec input
refused before anything runs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omoai_core.errors import InvalidInputError
from omoai_operator.patch import merge_patch
from omoai_operator.runner import RunResult, run_jobs
from omoai_operator.settings import OperatorSettings

from tests.support.operator_services import StubServices, WebhookReceiver

pytestmark = pytest.mark.timeout(120)

SECRET_ENV = "OMOAI_SECRET_HOOK_KEY_SIGNING_KEY"  # Secret "hook-key", key "signing-key" (omoai run)


def new_key() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ks = [new_key(), new_key()]
    monkeypatch.setenv(SECRET_ENV, " ".join(ks))
    return ks


@pytest.fixture
def receiver(keys: list[str]) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(keys)
    try:
        yield r
    finally:
        r.close()


def settings(stubs: StubServices, **over: Any) -> OperatorSettings:
    base: dict[str, Any] = {
        "asr_url": stubs.url,
        "llm_url": stubs.url,
        "endpoint_discovery": False,
        "notify_allow_http": True,  # the receiver is plain http on loopback:
        "url_allowed_networks": ["127.0.0.0/8"],  # both allowances are needed
        "notify_backoff_base_s": 0.1,
        "notify_backoff_max_s": 0.4,
        "notify_timeout_s": 0.5,
        "notify_retry_window_s": 30.0,
    }
    return OperatorSettings.model_validate(base | over)


def job(url: str, name: str = "meeting", **hook: Any) -> dict[str, Any]:
    return {
        "apiVersion": "omoai.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {
            "source": {"url": "https://media.example/meeting.wav"},
            "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]},
            "notifications": [{"url": url, "secretRef": {"name": "hook-key"}, **hook}],
        },
    }


def run(docs: list[dict[str, Any]], cfg: OperatorSettings, tmp_path: Path) -> list[RunResult]:
    results = asyncio.run(run_jobs(docs, cfg, data_dir=tmp_path, output_dir=tmp_path / "out"))
    for res in results:  # what was written is the final state: no delivery's last write is lost
        written: dict[str, Any] = {}
        for patch in res.sink.history:
            written = merge_patch(written, patch)
        assert written.get("notifications", []) == res.status.wire().get("notifications", [])
    return results


def test_a_job_notifies_started_and_succeeded_signed_with_both_keys_of_a_rotation(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    (res,) = run([job(receiver.url, events=["started", "succeeded", "failed"])], settings(stubs), tmp_path)
    assert res.ok
    got = receiver.received
    assert [r.json()["type"] for r in got] == ["transcriptionjob.started", "transcriptionjob.succeeded"]
    assert all(r.verified_by == [0, 1] for r in got)  # each key alone verifies: rotation works
    assert len({r.id for r in got}) == 2  # one id per event
    data = got[1].json()["data"]
    assert data["namespace"] == "local" and data["name"] == "meeting" and data["uid"] == "uid-meeting"
    assert data["phase"] == "Succeeded" and data["reason"] == "Completed"
    assert [Path(f).name for f in data["results"]["files"]] == ["meeting.json"] and data["audioDurationSeconds"] == 2.0
    assert data["summaryTitle"] == "Lời chào" and data["realTimeFactor"] is not None
    records = {d.event: d for d in res.status.notifications}
    assert {e: (d.state, d.attempts, d.last_http_code) for e, d in records.items()} == {
        "started": ("Delivered", 1, 204),
        "succeeded": ("Delivered", 1, 204),
    }
    assert records["succeeded"].id == got[1].id


def test_a_failed_job_sends_the_failed_event(stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path) -> None:
    stubs.fetch_audio = True  # the stub downloads the audio: the URL below answers 405, a permanent failure
    doc = job(receiver.url)
    doc["spec"]["source"] = {"url": receiver.url}
    (res,) = run([doc], settings(stubs), tmp_path)
    assert not res.ok
    (r,) = [r for r in receiver.received if r.headers.get("webhook-id")]
    assert r.json()["type"] == "transcriptionjob.failed" and r.json()["data"]["phase"] == "Failed"
    assert r.verified_by == [0, 1]


def test_retries_after_500_and_a_time_out_keep_the_same_id_until_accepted(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.answer(500, times=2)
    receiver.answer(200, delay_s=1.5)  # longer than the 0.5 s attempt time-out: no answer in time
    (res,) = run([job(receiver.url)], settings(stubs), tmp_path)
    assert res.ok
    got = receiver.received
    assert [r.status for r in got] == [500, 500, 200, 204]
    assert len({r.id for r in got}) == 1  # duplicates only across retries of one event
    assert all(r.verified_by == [0, 1] for r in got)
    gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # back-off between attempts (jitter: at least half)
    (d,) = res.status.notifications
    assert (d.state, d.attempts, d.last_http_code) == ("Delivered", 4, 204)


def test_retry_after_is_honoured(stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path) -> None:
    receiver.answer(503, headers={"Retry-After": "1"})
    (res,) = run([job(receiver.url)], settings(stubs), tmp_path)
    first, second = receiver.received
    assert second.at - first.at >= 0.95 and first.id == second.id
    assert res.status.notifications[0].state == "Delivered"


def test_410_disables_the_endpoint_for_the_rest_of_the_job(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.answer(410)
    (res,) = run([job(receiver.url, events=["started", "succeeded"])], settings(stubs), tmp_path)
    assert res.ok  # a delivery never fails the job
    assert [r.json()["type"] for r in receiver.received] == ["transcriptionjob.started"]
    assert {d.event: d.state for d in res.status.notifications} == {"started": "Disabled"}
    warnings = [e for e in res.sink.events if e.reason == "NotificationFailed"]
    assert len(warnings) == 1 and "410" in warnings[0].message


def test_another_4xx_stops_without_retrying(stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path) -> None:
    receiver.answer(400)
    (res,) = run([job(receiver.url)], settings(stubs), tmp_path)
    assert res.ok and len(receiver.received) == 1
    (d,) = res.status.notifications
    assert (d.state, d.attempts, d.last_http_code) == ("Failed", 1, 400)
    assert any(e.reason == "NotificationFailed" for e in res.sink.events)


def test_a_receiver_down_for_a_while_gets_the_event_when_it_is_back(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.down()

    async def scenario() -> list[RunResult]:
        work = asyncio.ensure_future(
            run_jobs([job(receiver.url)], settings(stubs), data_dir=tmp_path, output_dir=tmp_path / "o")
        )
        await asyncio.sleep(1.0)
        assert not work.done()  # the job is done; its delivery is still being retried
        await asyncio.to_thread(receiver.up)
        return await work

    (res,) = asyncio.run(scenario())
    (d,) = res.status.notifications
    assert d.state == "Delivered" and d.attempts >= 3 and len(receiver.received) == 1


def test_a_receiver_that_stays_down_is_given_up_after_the_window_and_the_job_still_succeeds(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.down()
    t0 = time.monotonic()
    (res,) = run([job(receiver.url)], settings(stubs, notify_retry_window_s=1.0), tmp_path)
    assert time.monotonic() - t0 < 10
    assert res.ok
    (d,) = res.status.notifications
    assert d.state == "Failed" and "gave up" in (d.message or "") and d.last_http_code is None
    assert any(e.reason == "NotificationFailed" and d.id in e.message for e in res.sink.events)


def test_cloudevents_deliveries_parse_with_the_cloudevents_sdk(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    from cloudevents.core.bindings.http import HTTPMessage, from_binary_event

    (res,) = run([job(receiver.url, format="cloudevents")], settings(stubs), tmp_path)
    (r,) = receiver.received
    assert r.verified_by == [0, 1]
    event = from_binary_event(HTTPMessage(headers=r.headers, body=r.body))
    assert event.get_type() == "io.omoai.transcriptionjob.succeeded" and event.get_id() == r.id
    data = event.get_data()
    assert isinstance(data, dict) and data["phase"] == "Succeeded" and data["uid"] == "uid-meeting"


def test_the_signing_key_never_appears_in_status_events_or_logs(
    stubs: StubServices, receiver: WebhookReceiver, keys: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer(500)
    receiver.answer(400)
    caplog.set_level(logging.DEBUG)
    (res,) = run([job(receiver.url, events=["started", "succeeded"])], settings(stubs), tmp_path)
    seen = json.dumps(res.status.wire()) + json.dumps(res.sink.history) + repr(res.sink.events) + caplog.text
    for k in keys:
        assert k not in seen and k.removeprefix("whsec_") not in seen


@pytest.mark.parametrize(
    ("url", "over", "env", "why"),
    [
        ("http://hooks.example/h", {"notify_allow_http": False}, None, "http:// is refused; use https"),
        ("https://127.0.0.1:9/h", {"url_allowed_networks": []}, None, "loopback address 127.0.0.1"),
        ("https://10.1.2.3/h", {"url_allowed_networks": []}, None, "private address 10.1.2.3"),
        ("https://hooks.example/h", {}, "", "has no key 'signing-key'"),
        ("https://hooks.example/h", {}, "not-a-key", "does not start with 'whsec_'"),
    ],
    ids=["http", "loopback", "private", "missing secret", "bad key"],
)
def test_bad_notifications_are_refused_by_omoai_run_before_anything_runs(
    stubs: StubServices,
    keys: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    url: str,
    over: dict[str, Any],
    env: str | None,
    why: str,
) -> None:
    bad = job(url, name="bad")
    if env is not None:  # the bad job's own Secret: absent, or not holding a key
        bad["spec"]["notifications"][0]["secretRef"] = {"name": "other-key"}
        if env:
            monkeypatch.setenv("OMOAI_SECRET_OTHER_KEY_SIGNING_KEY", env)
    good = job("https://hooks.example/ok", name="good")
    with pytest.raises(InvalidInputError, match=why) as e:
        run([good, bad], settings(stubs, **over), tmp_path)
    assert e.value.message.startswith("bad: spec.notifications[0]")
    assert stubs.asr_order == [] and not (tmp_path / "out").exists()  # nothing half-done


def test_the_omoai_run_command_refuses_a_bad_notification_before_starting_any_service(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job("http://hooks.example/h")))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    res = subprocess.run(
        [sys.executable, "-m", "omoai_operator.cli", "run", str(manifest), "--asr-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, SECRET_ENV: new_key()},
    )
    assert res.returncode == 2
    assert "meeting: spec.notifications[0].url: http:// is refused; use https" in res.stderr


def test_the_last_delivery_state_is_written_even_when_status_writes_are_slow(
    stubs: StubServices, receiver: WebhookReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omoai_operator.runner import LocalSink

    record = LocalSink.patch

    async def slow_patch(self: LocalSink, patch: Any) -> None:
        if any(d.get("state") == "Delivered" for d in patch.get("notifications", [])):
            await asyncio.sleep(0.5)  # an API server under load: the job ends while this write is in flight
        await record(self, patch)

    monkeypatch.setattr(LocalSink, "patch", slow_patch)
    (res,) = run([job(receiver.url)], settings(stubs), tmp_path)  # run() compares written and final
    assert [d.state for d in res.status.notifications] == ["Delivered"]
