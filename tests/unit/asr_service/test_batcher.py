"""The dynamic batcher, with a fake engine at the ``Engine`` Protocol seam."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from omoai_asr.batcher import Batcher, fits_one_window
from omoai_asr.engine.options import DecodeOptions
from omoai_asr.metrics import AsrMetrics
from omoai_core.errors import UnavailableError
from omoai_core.schemas import Transcript
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.timeout(60)

SHORT = DecodeOptions()
TINY_WINDOW = DecodeOptions(total_batch_duration=10.0)  # one window is about 5 s of audio


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the batcher recognises by name."""


class FakeEngine:
    name = "fake"

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.singles: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with: Exception | None = None
        self.oom_above = 0

    def _text(self, samples: np.ndarray) -> Transcript:
        return Transcript(text=f"n={len(samples)}", segments=[], duration=len(samples) / 16000, model=self.name)

    def transcribe_batch(self, batch: Sequence[np.ndarray], options: DecodeOptions) -> list[Transcript]:
        self.entered.set()
        self.gate.wait(10)
        if self.oom_above and len(batch) > self.oom_above:
            raise OutOfMemoryError("CUDA out of memory")
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append([len(s) for s in batch])
        return [self._text(s) for s in batch]

    def transcribe(
        self, samples: np.ndarray, options: DecodeOptions, progress: Callable[[float], None] | None = None
    ) -> Transcript:
        self.entered.set()
        for i in range(50):  # fifty "windows"
            self.gate.wait(10)
            threading.Event().wait(0.01)
            if progress is not None:
                progress((i + 1) / 50)
        self.singles.append(len(samples))
        return self._text(samples)


def samples(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int16)


async def make(engine: FakeEngine, *, size: int = 4, window: float = 0.05, **kw) -> Batcher:
    b = Batcher(engine, max_batch_size=size, batch_window_s=window, **kw)
    b.start()
    return b


async def test_requests_arriving_together_share_batches_up_to_the_limit() -> None:
    engine = FakeEngine()
    b = await make(engine, size=4)
    lengths = [16000 + i for i in range(6)]
    results = await asyncio.gather(*(b.submit(samples(n), SHORT) for n in lengths))
    assert [r.text for r in results] == [f"n={n}" for n in lengths]  # each caller gets its own transcript
    assert [len(x) for x in engine.batches] == [4, 2]
    await b.stop()


async def test_different_options_never_share_a_batch() -> None:
    engine = FakeEngine()
    b = await make(engine, size=8)
    other = DecodeOptions(chunk_size=32)
    results = await asyncio.gather(
        b.submit(samples(16000), SHORT), b.submit(samples(16001), other), b.submit(samples(16002), SHORT)
    )
    assert [r.text for r in results] == ["n=16000", "n=16001", "n=16002"]
    assert sorted(engine.batches) == [[16000, 16002], [16001]]
    await b.stop()


async def test_a_request_alone_waits_no_longer_than_the_window() -> None:
    engine = FakeEngine()
    b = await make(engine, size=8, window=0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await b.submit(samples(16000), SHORT)
    assert loop.time() - t0 < 5  # generous on a loaded machine; the point is it does not hang
    assert engine.batches == [[16000]]
    await b.stop()


async def test_a_caller_that_goes_away_before_its_batch_starts_is_dropped() -> None:
    engine = FakeEngine()
    metrics = AsrMetrics(CollectorRegistry(), "fake")
    b = await make(engine, size=1, window=0.0, metrics=metrics)
    engine.gate.clear()
    first = asyncio.ensure_future(b.submit(samples(16000), SHORT))
    await asyncio.to_thread(engine.entered.wait, 10)  # the first batch is computing (blocked)
    second = asyncio.ensure_future(b.submit(samples(22222), SHORT))
    await asyncio.sleep(0.05)
    second.cancel()
    engine.gate.set()
    assert (await first).text == "n=16000"
    await b.submit(samples(16001), SHORT)
    assert engine.batches == [[16000], [16001]]  # 22222 never reached the engine
    assert b.items_dropped == 1 and metrics.registry.get_sample_value("omoai_asr_batch_dropped_total") == 1
    await b.stop()


async def test_a_long_recording_runs_alone_and_stops_when_its_caller_goes() -> None:
    engine = FakeEngine()
    b = await make(engine)
    long = samples(16000 * 30)
    assert not fits_one_window(len(long), TINY_WINDOW) and fits_one_window(16000, TINY_WINDOW)
    assert (await b.submit(long, TINY_WINDOW)).text == f"n={len(long)}"
    assert engine.singles == [len(long)] and engine.batches == []
    engine.entered.clear()
    task = asyncio.ensure_future(b.submit(samples(16000 * 31), TINY_WINDOW))
    await asyncio.to_thread(engine.entered.wait, 10)
    task.cancel()
    await asyncio.sleep(0.2)
    # The next request is served promptly: the abandoned one stopped at its next "window".
    assert (await asyncio.wait_for(b.submit(samples(16000), TINY_WINDOW), 10)).text == "n=16000"
    assert engine.singles == [len(long)] and b.items_dropped == 1
    await b.stop()


async def test_an_engine_failure_reaches_every_caller_of_the_batch_and_the_batcher_goes_on() -> None:
    engine = FakeEngine()
    b = await make(engine, size=4)
    engine.fail_with = ValueError("boom")
    results = await asyncio.gather(*(b.submit(samples(16000), SHORT) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    engine.fail_with = None
    assert (await b.submit(samples(16000), SHORT)).text == "n=16000"
    await b.stop()


async def test_out_of_memory_clears_the_cache_and_retries_one_by_one() -> None:
    engine = FakeEngine()
    engine.oom_above = 1
    cleared: list[int] = []
    b = await make(engine, size=4, on_oom=lambda: cleared.append(1))
    results = await asyncio.gather(*(b.submit(samples(16000 + i), SHORT) for i in range(3)))
    assert [r.text for r in results] == ["n=16000", "n=16001", "n=16002"]
    assert engine.batches == [[16000], [16001], [16002]] and cleared == [1]
    await b.stop()


async def test_metrics_count_batches_audio_and_engine_time() -> None:
    engine = FakeEngine()
    registry = CollectorRegistry()
    b = await make(engine, size=4, metrics=AsrMetrics(registry, "fake"))
    await asyncio.gather(*(b.submit(samples(32000), SHORT) for _ in range(4)))
    get = registry.get_sample_value
    assert get("omoai_asr_batch_size_count") == 1 and get("omoai_asr_batch_size_sum") == 4
    assert get("omoai_asr_audio_seconds_total", {"model": "fake"}) == 8.0
    assert get("omoai_inference_duration_seconds_count", {"task": "transcribe", "model": "fake"}) == 1
    await b.stop()


async def test_stop_fails_queued_requests_with_a_retryable_error() -> None:
    engine = FakeEngine()
    b = await make(engine, size=1, window=0.0)
    engine.gate.clear()
    first = asyncio.ensure_future(b.submit(samples(16000), SHORT))
    await asyncio.to_thread(engine.entered.wait, 10)
    queued = asyncio.ensure_future(b.submit(samples(16001), SHORT))
    await asyncio.sleep(0.05)
    await b.stop()
    engine.gate.set()
    with pytest.raises(UnavailableError):
        await queued
    first.cancel()
    with pytest.raises(UnavailableError):
        await b.submit(samples(1), SHORT)
