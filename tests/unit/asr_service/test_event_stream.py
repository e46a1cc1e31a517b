"""`EventStream`: a streamed answer reports its outcome once, when the stream ends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from omoai_asr.sse import EventStream
from omoai_core.errors import InvalidInputError


async def _events(fail: Exception | None) -> AsyncIterator[tuple[str | None, object]]:
    yield "progress", {"audio_seconds_done": 1.0}
    if fail is not None:
        raise fail
    yield "done", {"text": "xin chào"}


async def _drain(stream: EventStream) -> list[bytes]:
    return [chunk async for chunk in stream.body_iterator]  # type: ignore[misc]


async def test_a_stream_that_ends_reports_success_only_at_its_end() -> None:
    outcomes: list[str] = []
    stream = EventStream(_events(None))
    stream.on_end = outcomes.append
    assert outcomes == []  # nothing known before the stream runs
    chunks = await _drain(stream)
    assert outcomes == ["success"]
    assert chunks[-1].startswith(b"event: done\n")


async def test_an_error_after_the_stream_started_is_an_error_event_and_its_outcome() -> None:
    outcomes: list[str] = []
    stream = EventStream(_events(InvalidInputError("bad audio")))
    stream.on_end = outcomes.append
    chunks = await _drain(stream)
    assert outcomes == ["invalid_input"]
    head, data = chunks[-1].decode().split("\n", 1)
    assert head == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["code"] == "invalid_input"

    outcomes.clear()
    stream = EventStream(_events(RuntimeError("boom")))
    stream.on_end = outcomes.append
    chunks = await _drain(stream)
    assert outcomes == ["error"] and b"internal_error" in chunks[-1]


async def test_a_client_that_hangs_up_mid_stream_is_counted_as_cancelled() -> None:
    outcomes: list[str] = []
    stream = EventStream(_events(None))
    stream.on_end = outcomes.append
    body = stream.body_iterator
    await body.__anext__()  # type: ignore[attr-defined]
    await body.aclose()  # type: ignore[attr-defined]  # what the server does when the client leaves
    assert outcomes == ["cancelled"]
