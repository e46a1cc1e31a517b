"""The operator's server-sent events reader: events split anywhere across chunks, every line ending,
comments and multi-line data, and a bound on a line that never ends."""

from __future__ import annotations

import pytest
from omoai_operator.sse import EventParser, EventStreamError, ServerEvent

STREAM = (
    ": keep-alive\r\n"
    'event: progress\r\ndata: {"audio_seconds_done": 1.0}\r\n\r\n'
    "event: segment\ndata: line one\ndata:line two\nid: 7\nretry: 10\n\n"
    "data: no name\r\r"
    "event: done\ndata: {}\n\n"
)
EXPECTED = [
    ServerEvent("progress", '{"audio_seconds_done": 1.0}'),
    ServerEvent("segment", "line one\nline two"),
    ServerEvent("message", "no name"),
    ServerEvent("done", "{}"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_events_come_out_the_same_however_the_stream_is_cut(size: int) -> None:
    parser = EventParser()
    out = []
    for i in range(0, len(STREAM), size):
        out += parser.feed(STREAM[i : i + size])
    assert out == EXPECTED


def test_an_event_without_its_blank_line_is_not_dispatched() -> None:
    parser = EventParser()
    assert parser.feed("event: done\ndata: {}\n") == []
    assert parser.feed("\n") == [ServerEvent("done", "{}")]


def test_a_line_longer_than_the_bound_is_an_error_not_unbounded_memory() -> None:
    parser = EventParser(max_line=100)
    parser.feed("data: " + "x" * 90)
    with pytest.raises(EventStreamError, match="longer than 100"):
        parser.feed("x" * 20)
