"""The counters and histograms alerts and panels read exist at 0 from registration, so that
``increase()``/``rate()`` count the very first event (a series that appears at 1 counts nothing)."""

from __future__ import annotations

import asyncio
import time

from omoai_operator.metrics import FAILURE_REASONS, STAGES, OperatorMetrics
from prometheus_client import CollectorRegistry, generate_latest


def test_alerted_operator_series_exist_at_zero_before_any_job():
    registry = CollectorRegistry()
    OperatorMetrics.create(registry)
    text = generate_latest(registry).decode()
    for kind in ("driver", "tidy"):
        assert f'omoai_operator_reconcile_errors_total{{kind="{kind}"}} 0.0' in text
    for stage in STAGES:
        assert f'omoai_operator_retries_total{{stage="{stage}"}} 0.0' in text
    for phase in ("Failed", "Succeeded", "Transcribing"):
        assert f'omoai_operator_transitions_total{{phase="{phase}"}} 0.0' in text
    for reason in FAILURE_REASONS:
        assert f'omoai_operator_job_failures_total{{reason="{reason}"}} 0.0' in text
    assert 'omoai_operator_job_duration_seconds_count{outcome="Failed"} 0.0' in text
    assert 'omoai_operator_queue_wait_seconds_count{service="asr"} 0.0' in text


def test_failure_reasons_stay_a_bounded_set():
    m = OperatorMetrics.create(CollectorRegistry())
    m.job_failed("AudioNotFound")
    m.job_failed("SomethingNobodyListed")
    m.job_failed(None)
    assert m.failures.labels(reason="AudioNotFound")._value.get() == 1
    assert m.failures.labels(reason="Other")._value.get() == 2
    labels = {s.labels["reason"] for metric in m.failures.collect() for s in metric.samples}
    assert labels == set(FAILURE_REASONS)


def test_the_heartbeat_is_stamped_from_the_event_loop():
    m = OperatorMetrics.create(CollectorRegistry())
    m.heartbeat.set(0)

    async def beat_briefly() -> None:
        task = asyncio.create_task(m.beat(interval_s=0.01))
        await asyncio.sleep(0.05)
        task.cancel()

    before = time.time()
    asyncio.run(beat_briefly())
    assert m.heartbeat._value.get() >= before - 1
