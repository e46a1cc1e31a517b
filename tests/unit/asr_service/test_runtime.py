"""The ASR service's structure: its HTTP layer and window geometry load without torch, the
geometry is the engine's, and the engine's lifetime is one runtime that is either whole or absent."""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from collections.abc import Callable, Sequence

import httpx
import numpy as np
import pytest
from omoai_asr import geometry
from omoai_asr.app import create_app
from omoai_asr.geometry import DecodeOptions
from omoai_asr.settings import AsrSettings
from omoai_core.schemas import Transcript
from omoai_core.settings import load_settings
from prometheus_client import CollectorRegistry

TORCH_FREE = (
    "omoai_asr.protocol",
    "omoai_asr.geometry",
    "omoai_asr.batcher",
    "omoai_asr.serving",
    "omoai_asr.routes.transcriptions",
    "omoai_asr.routes.openai",
    "omoai_asr.runtime",
    "omoai_asr.app",
)


def test_the_http_layer_and_the_geometry_import_without_torch() -> None:
    # A fresh interpreter: this one has loaded torch already.
    code = (
        "import importlib, sys\n"
        f"for name in {TORCH_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, name + ' loaded torch'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_engine_computes_with_the_geometry() -> None:
    from omoai_asr.engine import features, model, transcribe

    assert model.SUBSAMPLING is geometry.SUBSAMPLING  # defined once, in the torch-free module
    assert not hasattr(model, "MAX_RELATIVE_POSITION")
    assert transcribe.window_keep_frames is geometry.window_keep_frames
    assert transcribe.max_batch_frames is geometry.max_batch_frames
    for n in (0, 399, 400, 559, 560, 16000, 16123):
        waveform = features.samples_to_tensor(np.ones(n, dtype=np.int16))
        assert features.fbank(waveform).shape[0] == geometry.fbank_frames(n)
        assert model.subsampled_length(geometry.fbank_frames(n)) == max(0, (geometry.fbank_frames(n) - 7) // 8)


def test_one_window_ends_where_its_input_frames_end() -> None:
    options = DecodeOptions(total_batch_duration=10.0)
    frames = geometry.window_input_frames(options)
    assert frames == 8 * geometry.window_keep_frames(options) + 7
    last_fitting = geometry.FRAME_LENGTH + (frames - 1) * geometry.FRAME_SHIFT  # samples of exactly `frames`
    assert geometry.fbank_frames(last_fitting) == frames
    assert geometry.fits_one_window(last_fitting + geometry.FRAME_SHIFT - 1, options)
    assert not geometry.fits_one_window(last_fitting + geometry.FRAME_SHIFT, options)


# -- the runtime -----------------------------------------------------------------------------------


class Engine:
    name = "fake"

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls = 0

    def transcribe_batch(self, batch: Sequence[np.ndarray], options: DecodeOptions) -> list[Transcript]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return [Transcript(text="xin chào", segments=[], duration=len(s) / 16000, model="fake") for s in batch]

    def transcribe(
        self, samples: np.ndarray, options: DecodeOptions, progress: Callable[[float], None] | None = None
    ) -> Transcript:
        return self.transcribe_batch([samples], options)[0]


def _wav(seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(int(16000 * seconds)) / 5) * 3000).astype("<i2").tobytes())
    return buf.getvalue()


def _settings() -> AsrSettings:
    return load_settings(AsrSettings, model="fake", device="cpu", warmup=True)


async def _post(app: object, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://asr") as c:
        return await c.post("/v1/transcriptions", files={"file": ("a.wav", _wav())}, **kw)  # type: ignore[arg-type]


async def _until_ready(app: object) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://asr") as c:
        for _ in range(200):
            if (await c.get("/readyz")).status_code == 200:
                return
            await __import__("asyncio").sleep(0.01)
    raise AssertionError("never ready")


async def test_the_runtime_is_attached_whole_after_warm_up_and_closed_on_shutdown() -> None:
    engine = Engine()
    app = create_app(_settings(), engine_factory=lambda policy: engine, registry=CollectorRegistry())
    serving = app.state.serving
    assert not serving.ready and serving.runtime is None
    async with app.router.lifespan_context(app):
        await _until_ready(app)
        runtime = serving.runtime
        assert runtime is not None and runtime.engine is engine and runtime.batcher is serving.batcher
        assert engine.calls == 1  # the warm-up decode ran before the service said ready
        r = await _post(app)
        assert r.status_code == 200 and r.json()["text"] == "xin chào"
    assert serving.runtime is None and not serving.ready
    with pytest.raises(Exception, match="still loading"):
        _ = serving.batcher


async def test_an_unexpected_engine_error_is_a_500_that_says_not_to_retry() -> None:
    engine = Engine()
    settings = load_settings(AsrSettings, model="fake", device="cpu", warmup=False)
    app = create_app(settings, engine_factory=lambda policy: engine, registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        await _until_ready(app)
        engine.fail = RuntimeError("an engine bug")
        r = await _post(app)
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "internal_error" and err["retryable"] is False
    assert "an engine bug" not in r.text


async def test_a_failed_load_is_fatal_and_leaves_nothing_half_built() -> None:
    seen: list[BaseException] = []

    def broken(policy: object) -> Engine:
        raise RuntimeError("no such checkpoint")

    app = create_app(_settings(), engine_factory=broken, registry=CollectorRegistry(), on_fatal=seen.append)
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if seen:
                break
            await __import__("asyncio").sleep(0.01)
        r = await _post(app)
    assert [str(e) for e in seen] == ["no such checkpoint"] and app.state.load_error is seen[0]
    assert app.state.serving.runtime is None
    assert r.status_code == 503 and r.json()["error"]["retryable"] is True
