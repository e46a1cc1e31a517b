"""Work does not outlive its request: a request over the time limit gets 504 and a client that
disconnects is counted as cancelled; in both cases the long recording stops at its next window.
"""

from __future__ import annotations

import io
import re
import time
import wave
from pathlib import Path

import httpx
import pytest
from conftest import asr_server
from omoai_asr.engine.testing import TINY, synthetic_speech, with_dims, write_random_checkpoint

pytestmark = pytest.mark.timeout(300)


def sample(scrape: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", scrape, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def wait_for(http: httpx.Client, name: str, value: float, seconds: float = 60) -> float:
    deadline = time.monotonic() + seconds
    while True:
        got = sample(http.get("/metrics").text, name)
        if got >= value or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough that 5 minutes of audio takes seconds on a CPU."""
    dims = with_dims(TINY, n_state=256, n_head=4, n_ffn=1024, n_layer=6, n_vocab=256)
    return write_random_checkpoint(tmp_path_factory.mktemp("slow") / "slow-asr", dims)


def long_wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(synthetic_speech(seconds, seed=7).tobytes())
    return buf.getvalue()


def test_timeouts_and_disconnects_stop_the_work(slow_model: Path, tmp_path: Path) -> None:
    body = long_wav(600)
    # total_batch_duration=10 makes windows of about 5 s, so a long recording is 100+ windows.
    form = {"total_batch_duration": "10", "format": "txt"}
    with (
        asr_server(slow_model, tmp_path, OMOAI_REQUEST_TIMEOUT_S="3", OMOAI_TORCH_THREADS="1") as s,
        s.client() as http,
    ):
        r = http.post("/v1/transcriptions", files={"file": body}, data=form)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text
        assert wait_for(http, "omoai_asr_batch_dropped_total", 1) == 1  # stopped at its next window
        assert sample(http.get("/metrics").text, 'omoai_asr_requests_total{outcome="timeout"}') == 1

        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                s.url + "/v1/transcriptions", files={"file": body}, data=form, timeout=httpx.Timeout(60, read=1.0)
            )
        assert wait_for(http, 'omoai_asr_requests_total{outcome="cancelled"}', 1) == 1
        assert wait_for(http, "omoai_asr_batch_dropped_total", 2) == 2
        assert http.get("/healthz").status_code == 200
        r = http.post("/v1/transcriptions", files={"file": long_wav(2)}, data={"format": "txt"})
        assert r.status_code == 200
