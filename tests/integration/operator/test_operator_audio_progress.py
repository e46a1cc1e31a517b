"""Progress in audio seconds: the operator reads the ASR service's streamed answer (stub services
speaking the streaming contract) and shows how much of the recording is transcribed, with at most
one status write per interval; a service that does not stream still works; a stream that breaks
off, or ends in an ``error`` event, is a failed attempt handled like any other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from omoai_operator.runner import RunResult, run_jobs
from omoai_operator.settings import OperatorSettings
from operator_harness import RealServices

from tests.support.operator_services import StubServices

pytestmark = pytest.mark.timeout(120)


def run(stubs: StubServices, tmp_path: Path, **over: Any) -> tuple[RunResult, float]:
    cfg = OperatorSettings.model_validate(
        {"asr_url": stubs.url, "llm_url": stubs.url, "endpoint_discovery": False, "backoff_base_s": 0.05} | over
    )
    doc = {
        "apiVersion": "omoai.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": "long"},
        "spec": {
            "source": {"url": "https://media.example/long.wav"},
            "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]},
            "backoffLimit": 1,
        },
    }
    t0 = time.monotonic()
    (res,) = asyncio.run(run_jobs([doc], cfg, data_dir=tmp_path, output_dir=tmp_path / "out"))
    return res, time.monotonic() - t0


def audio_writes(res: RunResult) -> list[dict[str, Any]]:
    return [p for p in res.sink.history if "audioSecondsDone" in p]


def test_a_long_recording_shows_increasing_audio_seconds_with_bounded_status_writes(
    stubs: StubServices, tmp_path: Path
) -> None:
    stubs.stream_windows, stubs.window_delay_s, stubs.audio_seconds = 30, 0.05, 3 * 3600.0
    interval = 0.3
    res, took = run(stubs, tmp_path, progress_interval_s=interval)
    assert res.ok
    writes = audio_writes(res)
    done = [w["audioSecondsDone"] for w in writes]
    assert len(done) >= 3 and done == sorted(done) and len(set(done)) == len(done)  # it moves forward
    assert done[-1] == 3 * 3600.0 and writes[-1]["audioProgress"] == "3:00:00 / 3:00:00"
    assert 0 < done[0] < 3 * 3600.0 and writes[0]["audioSecondsTotal"] == 3 * 3600.0
    # 30 progress events over ~1.5 s, at most one write per interval (+ the stage's final one)
    assert len(writes) <= took / interval + 2
    shares = [int(w["progress"].rstrip("%")) for w in res.sink.history if "progress" in w]
    assert shares == sorted(shares) and shares[-1] == 100
    assert any(0 < s < 20 for s in shares)  # inside the ASR stage (one of 5 stages), not only at its end


def test_a_replica_that_does_not_stream_answers_the_same_request_and_progress_jumps_to_the_end(
    stubs: StubServices, tmp_path: Path
) -> None:
    stubs.strict, stubs.stream_windows = True, 5  # predates streaming: a "stream" body field would be refused
    res, _ = run(stubs, tmp_path)
    assert res.ok and len(stubs.asr_order) == 1  # one request: the query parameter is simply ignored
    (write,) = audio_writes(res)  # no progress while transcribing, all of it at the stage's end
    assert write["audioSecondsDone"] == write["audioSecondsTotal"] == 2.0


@pytest.mark.parametrize(
    ("end", "why"),
    [
        ("cut", "ended without its done event"),
        ("error", "(ServiceError): ASR service /v1/transcriptions (streamed) failed: the decoder failed"),
    ],
)
def test_a_stream_that_breaks_off_or_fails_is_a_retryable_failed_attempt(
    stubs: StubServices, tmp_path: Path, end: str, why: str
) -> None:
    stubs.stream_windows, stubs.stream_end = 2, end
    res, _ = run(stubs, tmp_path)
    assert not res.ok and res.status.reason == "BackoffLimitExceeded"
    assert why in (res.status.message or "")
    assert len(stubs.asr_order) == 2  # retried once (backoffLimit 1), like a non-streamed failure


@pytest.mark.slow
def test_the_real_asr_service_streams_progress_that_the_operator_writes(
    real_services: RealServices, shared_root: Path, tmp_path: Path
) -> None:
    cfg = OperatorSettings.model_validate(
        {
            "asr_url": real_services.asr_url,
            "llm_url": real_services.llm_url,
            "endpoint_discovery": False,
            "volumes": {"omoai-data": str(shared_root)},
            "progress_interval_s": 0.1,
        }
    )
    doc = {
        "apiVersion": "omoai.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": "xin-chao"},
        "spec": {
            "source": {"pvc": {"claimName": "omoai-data", "path": "samples/xin-chao.wav"}},  # uploaded
            # 2 s windows: the 7.2 s sample is decoded in several, each reported as it is done
            "asr": {"totalBatchDuration": 2, "chunkSize": 16, "leftContext": 16, "rightContext": 16},
            "postprocess": {"punctuation": False, "summary": "none", "topics": False},
            "output": {"pvc": {"claimName": "omoai-data", "path": "out"}, "formats": ["json"]},
        },
    }
    (res,) = asyncio.run(run_jobs([doc], cfg, data_dir=shared_root, output_dir=tmp_path / "out"))
    assert res.ok, res.status.message
    done = [w["audioSecondsDone"] for w in audio_writes(res)]
    assert len(done) >= 2 and done == sorted(done) and done[0] < done[-1]  # moved during the stage
    assert done[-1] == res.status.audio_seconds_total == round(res.status.audio_duration_seconds or 0, 1)
