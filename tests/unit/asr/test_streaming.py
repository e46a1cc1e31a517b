"""Incremental (live) decoding against the batch decode of the same audio.

The property that must hold: audio fed in pieces of any size and finished gives exactly the batch
transcript (text, tokens through the segments, segment and word times), for CTC and transducer
checkpoints, under decode settings of one window and of many; the committed deltas add up to that
text and never change; windows of several streams are decoded together.
"""

from __future__ import annotations

import asyncio
from functools import cache

import numpy as np
import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.chunkformer import TranscriptStream
from omoai_asr.engine.features import fbank, samples_to_tensor
from omoai_asr.live import Committed, Final, LiveScheduler, Partial, StreamBackpressureError, StreamClosedError
from omoai_core.errors import OverloadedError
from omoai_core.schemas import Segment, Transcript
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

from .conftest import FIXTURES, audio, expected

FIXTURES_ALL = ("small", "wide_k31", "rnnt_small")


@cache
def engine(fixture: str) -> ChunkFormerEngine:
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    return ChunkFormerEngine.load(FIXTURES / fixture / "model", policy)


def settings_of(fixture: str) -> list[tuple[str, DecodeOptions]]:
    """(clip name, options) of the fixture's long-form entries: many-window ones and one-window ones."""
    out = []
    for key, entry in expected(fixture)["endless_decode"].items():
        options = DecodeOptions(
            chunk_size=entry["chunk_size"],
            left_context=entry["left_context_size"],
            right_context=entry["right_context_size"],
            total_batch_duration=float(entry["total_batch_duration"]),
            word_timestamps=True,
        )
        out.append((key.split("__")[0], options))
    return out


def longest_clip(fixture: str) -> str:
    names = {name for name, _ in settings_of(fixture)}
    return max(names, key=lambda n: len(audio(fixture, n)))


# The longest clip under every chunk geometry with a small window budget (many windows), and under
# the largest budget (one window).
CASES = [
    (fixture, options)
    for fixture in FIXTURES_ALL
    for name, options in settings_of(fixture)
    if name == longest_clip(fixture)
    if (options.chunk_size < 64) == (options.total_batch_duration < 100)
]


def feed_in_pieces(
    eng: ChunkFormerEngine, streams: list[TranscriptStream], clips: list[np.ndarray], seed: int
) -> tuple[list[str], list[list[Segment]], list[Transcript]]:
    """Feed every clip in random pieces (1 sample to 2.5 s), stepping all streams together after
    each round; finish. Returns the concatenated deltas, the final segments as they were sent,
    and the final transcripts."""
    rng = np.random.default_rng(seed)
    texts = ["" for _ in streams]
    segments: list[list[Segment]] = [[] for _ in streams]
    positions = [0 for _ in streams]
    while any(p < len(c) for p, c in zip(positions, clips, strict=True)):
        for i, (stream, clip) in enumerate(zip(streams, clips, strict=True)):
            size = int(rng.choice([1, 399, 401, int(rng.integers(1, 60_000)), int(rng.integers(1, 60_000))]))
            stream.push(clip[positions[i] : positions[i] + size])
            positions[i] += size
        while any(s.has_ready_window for s in streams):
            for i, update in enumerate(eng.step_streams(streams)):
                assert update.final is None
                texts[i] += update.text_delta
                segments[i].extend(update.segments)
    finals: list[Transcript | None] = [None] * len(streams)
    while any(f is None for f in finals):
        for i, update in enumerate(eng.step_streams(streams, finish=[f is None for f in finals])):
            texts[i] += update.text_delta
            segments[i].extend(update.segments)
            if update.final is not None:
                finals[i] = update.final
    return texts, segments, [f for f in finals if f is not None]


@pytest.mark.parametrize(("fixture", "options"), CASES, ids=lambda v: getattr(v, "chunk_size", v))
def test_pieces_of_random_sizes_give_exactly_the_batch_transcript(fixture: str, options: DecodeOptions) -> None:
    eng = engine(fixture)
    clip = audio(fixture, longest_clip(fixture))
    batch = eng.transcribe(clip, options)
    stream = eng.open_stream(options)
    texts, segments, finals = feed_in_pieces(eng, [stream], [clip], seed=options.chunk_size)
    assert finals[0] == batch  # text, segments, words and their times
    assert texts[0] == batch.text  # the committed deltas add up to the text
    assert segments[0] == batch.segments  # every segment sent once, as final as the batch's
    assert stream.decoder.done and stream.decoder.feats is None


@pytest.mark.parametrize("fixture", ["small", "rnnt_small"])
def test_windows_of_several_streams_are_decoded_in_one_masked_batch(fixture: str) -> None:
    eng = engine(fixture)
    options = DecodeOptions(16, 32, 16, 11.0)
    names = sorted({name for name, _ in settings_of(fixture)}, key=lambda n: -len(audio(fixture, n)))
    clips = [audio(fixture, n) for n in names] + [audio(fixture, names[0])[: 16000 * 9]]
    streams = [eng.open_stream(options) for _ in clips]
    calls = 0
    encoder = eng.model.encoder
    forward = encoder.forward

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return forward(*args, **kwargs)  # type: ignore[arg-type]

    encoder.forward = counting  # type: ignore[method-assign]
    try:
        texts, _, finals = feed_in_pieces(eng, streams, clips, seed=7)
    finally:
        del encoder.forward
    windows = [len(s.decoder.windows) for s in streams]
    assert calls < sum(windows)  # not one stream after another
    for clip, text, final in zip(clips, texts, finals, strict=True):
        batch = eng.transcribe(clip, options)
        assert final.text == batch.text == text
        assert [(s.start, s.end) for s in final.segments] == [(s.start, s.end) for s in batch.segments]


def test_state_stays_bounded_and_partials_never_enter_committed_text() -> None:
    eng = engine("small")
    options = DecodeOptions(8, 16, 4, 11.0)
    clip = audio("small", longest_clip("small"))
    stream = eng.open_stream(options)
    committed, partials = "", []
    cache_shapes = set()
    piece = 16000
    for lo in range(0, len(clip), piece):
        stream.push(clip[lo : lo + piece])
        (update,) = eng.step_streams([stream], partial=[True])
        committed += update.text_delta
        partials.append(update.partial)
        while stream.has_ready_window:
            (update,) = eng.step_streams([stream])
            committed += update.text_delta
        decoder = stream.decoder
        assert decoder.feats is None or decoder.feats.size(0) <= decoder.full_window_frames + piece // 160
        if decoder.att_cache is not None:
            cache_shapes.add((tuple(decoder.att_cache.shape), tuple(decoder.conv_cache.shape)))  # type: ignore[union-attr]
        assert stream.pending_samples <= 160 * decoder.full_window_frames + piece
    (final,) = eng.step_streams([stream], finish=[True])
    committed += final.text_delta
    assert not stream.has_ready_window
    assert final.final is not None and committed == final.final.text == eng.transcribe(clip, options).text
    assert len(cache_shapes) == 1  # the caches do not grow with the stream
    assert any(p for p in partials)  # the tail had a hypothesis before its right context came


def test_fbank_of_pieces_equals_fbank_of_the_whole_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(16000 * 12) * 3000).astype(np.int16)
    whole = fbank(samples_to_tensor(samples))
    parts, frame = [], 0
    while frame < whole.size(0):
        stop = min(whole.size(0), frame + int(rng.integers(1, 700)))
        parts.append(fbank(samples_to_tensor(samples[160 * frame : 160 * (stop - 1) + 400])))
        frame = stop
    assert torch.equal(torch.cat(parts), whole)


# -- the scheduler ---------------------------------------------------------------------------------


class _Thread:
    """The batcher's engine thread, as the scheduler uses it."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1)

    def __call__(self, fn):  # type: ignore[no-untyped-def]
        return asyncio.get_running_loop().run_in_executor(self.pool, fn)


async def test_live_streams_commit_items_equal_to_batch_with_limits_and_cleanup() -> None:
    eng = engine("rnnt_small")
    options = DecodeOptions(8, 16, 4, 11.0)
    clip = audio("rnnt_small", longest_clip("rnnt_small"))
    live = LiveScheduler(eng, _Thread(), max_streams=2, max_buffered_s=1.0, partial_interval_s=0.0)
    with pytest.raises(Exception, match="not running"):
        live.open(options)
    live.start()
    try:
        a = live.open(options, partials=True)
        b = live.open(options)
        with pytest.raises(OverloadedError):
            live.open(options)
        first, second = clip[: 16000 * 20], clip[16000 * 20 :]
        events = []

        async def read() -> None:
            async for event in a.events():
                events.append(event)

        reader = asyncio.create_task(read())
        for lo in range(0, len(first), 7000):
            await a.feed(first[lo : lo + 7000])
        assert await a.commit() == eng.transcribe(first, options)
        await a.feed(second)
        item = await a.commit()
        assert item == eng.transcribe(second, options)
        a.close()
        await reader
        finals = [e for e in events if isinstance(e, Final)]
        assert [f.item_start for f in finals] == [0.0, 20.0]
        committed = [e for e in events if isinstance(e, Committed)]
        assert "".join(e.text for e in committed) == finals[0].transcript.text + finals[1].transcript.text
        # Segments of the second item arrive in the stream clock.
        second_segments = [s for e in committed for s in e.segments if s.start >= 20.0]
        assert [s.start - 20.0 for s in second_segments] == pytest.approx([s.start for s in item.segments])
        assert any(isinstance(e, Partial) for e in events)

        # Backpressure: a stream that is fed faster than it is decoded refuses more audio.
        b.feed_nowait(clip[: 16000 * 8])
        with pytest.raises(StreamBackpressureError):
            for _ in range(20):
                b.feed_nowait(clip[: 16000 * 8])
        b.clear()
        assert b.buffered_seconds == 0.0
        assert await b.commit() == eng.transcribe(clip[:0], options).model_copy(update={"duration": 0.0})
        b.close()
        with pytest.raises(StreamClosedError):
            await b.feed(clip[:100])
        assert live.open_streams == 0
    finally:
        await live.stop()


async def test_closing_a_streamed_file_answer_stops_the_work_and_frees_the_stream() -> None:
    """What a client hang-up does to ``stream=true``: the event iterator is closed mid-way."""
    from types import SimpleNamespace

    from omoai_asr.serving import AsrServing

    eng = engine("small")
    options = DecodeOptions(8, 16, 4, 11.0)
    clip = audio("small", longest_clip("small"))
    live = LiveScheduler(eng, _Thread(), max_streams=1, max_buffered_s=5.0)
    live.start()
    try:
        stream = live.open(options)
        events = AsrServing._file_events(SimpleNamespace(model_name="m"), stream, clip)  # type: ignore[arg-type]
        name, _ = await anext(events)
        assert name in ("delta", "segment", "progress")
        await events.aclose()  # the client went away
        assert stream.closed and live.open_streams == 0
        assert stream.audio_seconds < len(clip) / 16000  # feeding stopped (backpressure held the rest)
        live.open(options).close()  # the slot is free again
    finally:
        await live.stop()


def test_transcribe_batch_groups_recordings_by_the_one_batching_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The utterance that crosses the budget joins the batch (``reference_batches``), in both
    masked-batch paths; recordings longer than one window are decoded on their own."""
    from omoai_asr.engine import chunkformer
    from omoai_asr.engine.transcribe import reference_batches

    eng = engine("small")
    options = DecodeOptions(16, 32, 16, 11.0)  # budget: 550 fbank frames, one window: 519
    rng = np.random.default_rng(3)
    seconds = [2.0, 3.5, 1.0, 4.9, 0.5, 30.0, 2.5]  # 30 s needs several windows
    clips = [(rng.standard_normal(int(s * 16000)) * 1000).astype(np.int16) for s in seconds]
    groups: list[int] = []
    real = chunkformer.batch_decode

    def recording(model, feats, *args, **kwargs):  # type: ignore[no-untyped-def]
        groups.append(len(feats))
        return real(model, feats, *args, **kwargs)

    monkeypatch.setattr(chunkformer, "batch_decode", recording)
    eng.transcribe_batch(clips, options)
    short = [eng.features(c).size(0) for c in clips if len(c) < 16000 * 5]
    assert groups == [len(g) for g in reference_batches(short, options)]
    assert len(groups) < len(short)  # some were decoded together
